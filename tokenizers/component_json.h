// Small readers of tokenizer.json fields shared by the component factories:
// each failure names the field path.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

#include "tokenizers/pattern.h"

namespace namm::tokenizers::json_field {

inline std::invalid_argument error(const std::string& field, const std::string& problem) {
  return std::invalid_argument(field + ": " + problem);
}

inline const nlohmann::json& require(const nlohmann::json& object, const char* key, const std::string& field) {
  const auto it = object.find(key);
  if (it == object.end()) throw error(field + "." + key, "missing");
  return *it;
}

inline std::string string_of(const nlohmann::json& object, const char* key, const std::string& field) {
  const auto& value = require(object, key, field);
  if (!value.is_string()) throw error(field + "." + key, "is not a string");
  return value.get<std::string>();
}

inline bool bool_or(const nlohmann::json& object, const char* key, bool fallback, const std::string& field) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw error(field + "." + key, "is not true or false");
  return it->get<bool>();
}

inline int64_t int_or(const nlohmann::json& object, const char* key, int64_t fallback, const std::string& field) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) throw error(field + "." + key, "is not an integer");
  return it->get<int64_t>();
}

inline std::string type_of(const nlohmann::json& config, const std::string& field) {
  if (!config.is_object()) throw error(field, "is not an object");
  return string_of(config, "type", field);
}

/// {"String": s} or {"Regex": r}.
inline Pattern pattern_of(const nlohmann::json& object, const char* key, const std::string& field) {
  const auto& value = require(object, key, field);
  const std::string where = field + "." + key;
  if (!value.is_object() || value.size() != 1) throw error(where, "is not {\"String\": ...} or {\"Regex\": ...}");
  const std::string kind = value.begin().key();
  const nlohmann::json& source = value.begin().value();
  if (!source.is_string()) throw error(where + "." + kind, "is not a string");
  try {
    return Pattern::from_kind(kind, source.get<std::string>());
  } catch (const std::invalid_argument& e) {
    throw error(where, e.what());
  }
}

}  // namespace namm::tokenizers::json_field
