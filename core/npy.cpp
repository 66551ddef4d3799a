// NumPy .npy reader and writer: the subset namm exchanges with Python tools
// (little-endian float32/float64/int64/int32, C order, format 1.0-3.0).
// Not a general pickle-aware reader: object arrays and structured dtypes are
// rejected with a message that names the file.
#include "core/npy.h"

#include "core/atomic_file.h"
#include "core/parse_number.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace namm {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw std::runtime_error(path + ": " + problem);
}

// Finds the value text that follows 'key': in a Python dict literal.
std::string dict_value(const std::string& path, const std::string& header,
                       const std::string& key) {
  const std::string quoted_single = "'" + key + "'";
  const std::string quoted_double = "\"" + key + "\"";
  size_t pos = header.find(quoted_single);
  size_t key_len = quoted_single.size();
  if (pos == std::string::npos) {
    pos = header.find(quoted_double);
    key_len = quoted_double.size();
  }
  if (pos == std::string::npos) fail(path, "bad header: no '" + key + "' in " + printable(header, 120));
  pos = header.find(':', pos + key_len);
  if (pos == std::string::npos) fail(path, "bad header: no ':' after '" + key + "' in " + printable(header, 120));
  ++pos;
  while (pos < header.size() && header[pos] == ' ') ++pos;
  if (pos >= header.size()) fail(path, "bad header: no value for '" + key + "'");
  const char open = header[pos];
  size_t end;
  if (open == '\'' || open == '"') {
    end = header.find(open, pos + 1);
    if (end == std::string::npos) fail(path, "bad header: unterminated string for '" + key + "'");
    return header.substr(pos + 1, end - pos - 1);
  }
  if (open == '(') {
    end = header.find(')', pos);
    if (end == std::string::npos) fail(path, "bad header: unterminated shape tuple");
    return header.substr(pos, end - pos + 1);
  }
  end = header.find_first_of(",}", pos);
  if (end == std::string::npos) fail(path, "bad header: unterminated value for '" + key + "'");
  std::string value = header.substr(pos, end - pos);
  while (!value.empty() && value.back() == ' ') value.pop_back();
  return value;
}

std::vector<int64_t> parse_shape(const std::string& path, const std::string& tuple) {
  // tuple is "(a, b, )" or "()" or "(a,)".
  std::vector<int64_t> shape;
  std::string token;
  for (size_t i = 1; i + 1 < tuple.size(); ++i) {
    const char c = tuple[i];
    if (c == ',' || c == ' ') {
      if (!token.empty()) {
        shape.push_back(parse_int64(token, path + ": bad header: shape dimension"));
        token.clear();
      }
    } else if (c >= '0' && c <= '9') {
      token.push_back(c);
    } else if (c == 'L') {
      // Python 2 long suffix in very old files.
    } else {
      fail(path, "bad header: shape " + printable(tuple, 80) + " is not a tuple of non-negative integers");
    }
  }
  if (!token.empty()) shape.push_back(parse_int64(token, path + ": bad header: shape dimension"));
  return shape;
}

at::ScalarType parse_descr(const std::string& path, const std::string& descr) {
  if (descr.size() < 2) fail(path, "bad header: dtype '" + printable(descr, 40) + "'");
  const char order = descr[0];
  const std::string kind = descr.substr(1);
  if (order == '>') fail(path, "big-endian dtype '" + descr + "' is not supported");
  if (order != '<' && order != '=' && order != '|') {
    fail(path, "bad header: dtype '" + printable(descr, 40) + "'");
  }
  if (kind == "f4") return at::kFloat;
  if (kind == "f8") return at::kDouble;
  if (kind == "i8") return at::kLong;
  if (kind == "i4") return at::kInt;
  fail(path, "dtype '" + descr + "' is not supported (float32, float64, int64, int32 only)");
}

std::string descr_of(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return "<f4";
    case at::kDouble: return "<f8";
    case at::kLong: return "<i8";
    case at::kInt: return "<i4";
    default:
      throw std::invalid_argument(std::string("write_npy: dtype ") + c10::toString(type) +
                                  " is not supported (float32, float64, int64, int32 only)");
  }
}

uint32_t read_le(const unsigned char* bytes, int count) {
  uint32_t value = 0;
  for (int i = count - 1; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

}  // namespace

at::Tensor read_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < kMagicLen + 2 || std::memcmp(bytes.data(), kMagic, kMagicLen) != 0) {
    fail(path, "bad magic: not a .npy file");
  }
  const auto* raw = reinterpret_cast<const unsigned char*>(bytes.data());
  const int major = raw[6];
  const int minor = raw[7];
  if (major < 1 || major > 3) {
    fail(path, "unsupported .npy format version " + std::to_string(major) + "." +
                   std::to_string(minor));
  }
  // v1 stores the header length in 2 bytes, v2 and v3 in 4.
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagicLen + 2 + len_bytes;
  if (bytes.size() < prefix) fail(path, "truncated header");
  const size_t header_len = read_le(raw + kMagicLen + 2, static_cast<int>(len_bytes));
  if (bytes.size() < prefix + header_len) {
    fail(path, "truncated header: declares " + std::to_string(header_len) + " bytes, file has " +
                   std::to_string(bytes.size() - prefix));
  }
  std::string header = bytes.substr(prefix, header_len);
  // the header is padded with spaces and ends in '\n'; keep messages one line.
  while (!header.empty() && (header.back() == ' ' || header.back() == '\n')) header.pop_back();
  if (header.find('{') == std::string::npos || header.find('}') == std::string::npos) {
    fail(path, "bad header: not a dict: " + header);
  }

  const at::ScalarType dtype = parse_descr(path, dict_value(path, header, "descr"));
  const std::string fortran = dict_value(path, header, "fortran_order");
  if (fortran == "True") fail(path, "fortran_order arrays are not supported");
  if (fortran != "False") fail(path, "bad header: fortran_order is '" + fortran + "'");
  const std::vector<int64_t> shape = parse_shape(path, dict_value(path, header, "shape"));

  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const size_t elem = c10::elementSize(dtype);
  const size_t expected = static_cast<size_t>(numel) * elem;
  const size_t available = bytes.size() - prefix - header_len;
  if (available < expected) {
    fail(path, "truncated data: expected " + std::to_string(expected) + " bytes, found " +
                   std::to_string(available));
  }
  if (available > expected) {
    fail(path, "corrupt data: " + std::to_string(available - expected) +
                   " trailing bytes after the array");
  }
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(dtype));
  if (expected > 0) std::memcpy(out.data_ptr(), bytes.data() + prefix + header_len, expected);
  return out;
}

void write_npy(const std::string& path, const at::Tensor& tensor) {
  if (!tensor.defined()) throw std::invalid_argument("write_npy " + path + ": undefined tensor");
  if (!tensor.device().is_cpu()) {
    throw std::invalid_argument("write_npy " + path + ": tensor on " + tensor.device().str() +
                                ", expected CPU");
  }
  const std::string descr = descr_of(tensor.scalar_type());
  const at::Tensor data = tensor.contiguous();

  std::string shape = "(";
  for (int64_t d : data.sizes()) shape += std::to_string(d) + ", ";
  if (data.dim() == 1) shape.resize(shape.size() - 1);  // "(n,)"
  else if (data.dim() > 1) shape.resize(shape.size() - 2);
  shape += ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";

  // pad with spaces so data starts on a 64-byte boundary; header ends with '\n'.
  const bool v1 = header.size() + 1 + kMagicLen + 4 <= 65535;
  const size_t prefix = kMagicLen + 2 + (v1 ? 2 : 4);
  const size_t total = prefix + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');

  std::string bytes(kMagic, kMagicLen);
  bytes.push_back(static_cast<char>(v1 ? 1 : 2));
  bytes.push_back(0);
  const uint32_t len = static_cast<uint32_t>(header.size());
  for (size_t i = 0; i < (v1 ? 2u : 4u); ++i) bytes.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  bytes += header;
  bytes.append(static_cast<const char*>(data.data_ptr()), data.numel() * data.element_size());
  write_file_atomically(path, bytes);
}

}  // namespace namm
