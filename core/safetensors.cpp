// safetensors reader and writer.
//
// The reader validates the whole header before touching the data, then reads
// the data section with one read into one 64-byte-aligned allocation; every
// tensor is a view of that allocation whose deleter holds a shared reference,
// so a multi-GB shard costs one copy from disk and no more. A tensor whose
// offset is not a multiple of its item size (legal in the format) is copied
// out instead, since misaligned typed access is undefined behaviour.
#include "core/safetensors.h"

#include "core/atomic_file.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; this code copies it as is");

namespace namm {
namespace {

using json = nlohmann::json;

// the Hugging Face reader's limit: guards against allocating for a garbage length.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr char kMetadataKey[] = "__metadata__";

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  uint64_t item_size;
};

constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4},    {"F16", at::kHalf, 2},
    {"BF16", at::kBFloat16, 2}, {"I64", at::kLong, 8},  {"I32", at::kInt, 4},
    {"I16", at::kShort, 2},  {"I8", at::kChar, 1},      {"U8", at::kByte, 1},
    {"BOOL", at::kBool, 1},
};

const DtypeInfo* dtype_by_name(const std::string& name) {
  for (const DtypeInfo& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeInfo* dtype_by_type(at::ScalarType type) {
  for (const DtypeInfo& d : kDtypes)
    if (type == d.type) return &d;
  return nullptr;
}

std::string supported_list() {
  std::string out;
  for (const DtypeInfo& d : kDtypes) out += std::string(out.empty() ? "" : " ") + d.name;
  return out;
}

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw std::runtime_error(path + ": " + problem);
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

// compact one-line rendering of a JSON value for messages, shortened if long.
std::string brief(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

// Parses and checks one tensor entry of the header.
Entry parse_entry(const std::string& path, const std::string& name, const json& value) {
  const std::string where = "tensor " + quoted(name) + ": ";
  if (!value.is_object())
    fail(path, where + "entry is a JSON " + value.type_name() + ", not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!value.contains(key)) fail(path, where + "missing " + quoted(key));

  Entry e;
  e.name = name;
  const json& dtype = value["dtype"];
  if (!dtype.is_string())
    fail(path, where + "\"dtype\" is a JSON " + dtype.type_name() + ", not a string");
  e.dtype = dtype_by_name(dtype.get<std::string>());
  if (e.dtype == nullptr)
    fail(path, where + "unsupported dtype " + brief(dtype) + " (supported: " +
                   supported_list() + ")");

  const json& shape = value["shape"];
  if (!shape.is_array())
    fail(path, where + "\"shape\" must be an array of non-negative integers, got " + brief(shape));
  uint64_t numel = 1;
  bool too_large = false;
  for (const json& dim : shape) {
    if (!dim.is_number_integer() ||
        (dim.is_number_unsigned() ? dim.get<uint64_t>() > INT64_MAX : dim.get<int64_t>() < 0))
      fail(path, where + "\"shape\" must be an array of non-negative integers, got " + brief(shape));
    const uint64_t d = dim.get<uint64_t>();
    e.shape.push_back(static_cast<int64_t>(d));
    too_large = too_large || __builtin_mul_overflow(numel, d, &numel);
  }
  uint64_t nbytes = 0;
  too_large = too_large || __builtin_mul_overflow(numel, e.dtype->item_size, &nbytes);

  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    fail(path, where + "\"data_offsets\" must be [begin, end] with non-negative integers, got " +
                   brief(offsets));
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  if (e.end < e.begin)
    fail(path, where + "data_offsets " + brief(offsets) + " end before begin");
  if (too_large || e.end - e.begin != nbytes)
    fail(path, where + "data_offsets " + brief(offsets) + " hold " +
                   std::to_string(e.end - e.begin) + " bytes but " + e.dtype->name + " " +
                   brief(shape) + " needs " +
                   (too_large ? std::string("more than 2^64") : std::to_string(nbytes)));
  return e;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& value) {
  std::map<std::string, std::string> out;
  if (value.is_null()) return out;  // the Rust reader accepts null as "no metadata"
  if (!value.is_object())
    fail(path, "\"__metadata__\" is a JSON " + std::string(value.type_name()) + ", not an object");
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string())
      fail(path, "\"__metadata__\" value of " + quoted(key) + " is a JSON " + v.type_name() +
                     ", not a string");
    out[key] = v.get<std::string>();
  }
  return out;
}

// pread until count bytes or EOF; returns bytes read.
uint64_t read_at(const std::string& path, int fd, char* dst, uint64_t count, uint64_t offset) {
  uint64_t done = 0;
  while (done < count) {
    // reads above 2^31 bytes are cut short by Linux anyway; ask for at most 1 GiB.
    const size_t want = static_cast<size_t>(std::min<uint64_t>(count - done, 1ull << 30));
    ssize_t n = ::pread(fd, dst + done, want, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(path, std::string("read: ") + std::strerror(errno));
    if (n == 0) break;
    done += static_cast<uint64_t>(n);
  }
  return done;
}

struct FdCloser {
  int fd;
  ~FdCloser() { if (fd >= 0) ::close(fd); }
};

}  // namespace

const at::Tensor& SafetensorsFile::at(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) {
    std::string names;
    for (const auto& [n, t] : tensors) names += (names.empty() ? "" : ", ") + n;
    throw std::runtime_error(source + ": no tensor " + quoted(name) + " (has: " +
                             (names.empty() ? "none" : names) + ")");
  }
  return it->second;
}

namespace {

// The validated header of an open safetensors file: entries, metadata and
// where the data section lies. Reads no tensor data.
struct ParsedHeader {
  std::vector<Entry> entries;
  std::map<std::string, std::string> metadata;
  uint64_t header_size = 0, data_size = 0;
};

ParsedHeader parse_header(const std::string& path, int fd) {
    struct stat st {};
  if (::fstat(fd, &st) != 0) fail(path, std::strerror(errno));
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);

  // header length: 8 bytes little-endian.
  if (file_size < 8)
    fail(path, "file is " + std::to_string(file_size) +
                   " bytes, shorter than the 8-byte header length");
  unsigned char prefix[8];
  if (read_at(path, fd, reinterpret_cast<char*>(prefix), 8, 0) != 8)
    fail(path, "file shrank while reading");
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | prefix[i];
  if (header_size > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(header_size) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderBytes) + " bytes");
  if (header_size > file_size - 8)
    fail(path, "header length " + std::to_string(header_size) + " exceeds the " +
                   std::to_string(file_size - 8) + " bytes after the length (file truncated?)");

  std::string header_text(header_size, '\0');
  if (read_at(path, fd, header_text.data(), header_size, 8) != header_size)
    fail(path, "file shrank while reading");
  json header;
  try {
    header = json::parse(header_text);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object())
    fail(path, std::string("header is a JSON ") + header.type_name() + ", not an object");

  ParsedHeader out;
  out.header_size = header_size;
  std::vector<Entry>& entries = out.entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey)
      out.metadata = parse_metadata(path, value);
    else
      entries.push_back(parse_entry(path, key, value));
  }

  // ranges must lie inside the data section and not overlap (empty ones are points).
  const uint64_t data_size = file_size - 8 - header_size;
  out.data_size = data_size;
  for (const Entry& e : entries)
    if (e.end > data_size)
      fail(path, "tensor " + quoted(e.name) + ": data_offsets [" + std::to_string(e.begin) +
                     ", " + std::to_string(e.end) + "] run past the end of the " +
                     std::to_string(data_size) + "-byte data section (file truncated?)");
  std::vector<const Entry*> by_begin;
  for (const Entry& e : entries)
    if (e.end > e.begin) by_begin.push_back(&e);
  std::sort(by_begin.begin(), by_begin.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_begin.size(); ++i) {
    const Entry& a = *by_begin[i - 1];
    const Entry& b = *by_begin[i];
    if (b.begin < a.end)
      fail(path, "tensors " + quoted(a.name) + " [" + std::to_string(a.begin) + ", " +
                     std::to_string(a.end) + "] and " + quoted(b.name) + " [" +
                     std::to_string(b.begin) + ", " + std::to_string(b.end) + "] overlap");
  }

  return out;
}

}  // namespace

SafetensorsHeader read_safetensors_header(const std::string& path) {
  FdCloser file{open_input_file(path)};  // a regular file: a FIFO or device fails here, never hangs
  const ParsedHeader parsed = parse_header(path, file.fd);
  SafetensorsHeader out;
  out.source = path;
  out.metadata = parsed.metadata;
  for (const Entry& e : parsed.entries) out.tensors[e.name] = {e.dtype->name, e.shape};
  return out;
}

SafetensorsFile read_safetensors(const std::string& path) {
  FdCloser file{open_input_file(path)};  // a regular file: a FIFO or device fails here, never hangs
  const ParsedHeader parsed = parse_header(path, file.fd);
  const std::vector<Entry>& entries = parsed.entries;
  const uint64_t header_size = parsed.header_size, data_size = parsed.data_size;
  SafetensorsFile out;
  out.source = path;
  out.metadata = parsed.metadata;

  // one read of the whole data section into one aligned allocation.
  std::shared_ptr<char> data(static_cast<char*>(std::aligned_alloc(64, (data_size + 64) / 64 * 64)),
                             std::free);
  if (!data) fail(path, "cannot allocate " + std::to_string(data_size) + " bytes");
  if (read_at(path, file.fd, data.get(), data_size, 8 + header_size) != data_size)
    fail(path, "file shrank while reading");

  for (const Entry& e : entries) {
    const auto options = at::TensorOptions().dtype(e.dtype->type).device(at::kCPU);
    char* src = data.get() + e.begin;
    const uint64_t nbytes = e.end - e.begin;
    if (e.dtype->type == at::kBool) {
      // any byte but 0 or 1 would be an invalid bool in C++.
      for (uint64_t i = 0; i < nbytes; ++i)
        if (static_cast<unsigned char>(src[i]) > 1)
          fail(path, "tensor " + quoted(e.name) + ": BOOL element " + std::to_string(i) +
                         " is byte " + std::to_string(static_cast<unsigned char>(src[i])) +
                         ", not 0 or 1");
    }
    at::Tensor t;
    if (nbytes == 0) {
      t = at::empty(e.shape, options);
    } else if (e.begin % e.dtype->item_size == 0) {
      t = at::from_blob(src, e.shape, [keep = data](void*) {}, options);
    } else {
      t = at::empty(e.shape, options);
      std::memcpy(t.data_ptr(), src, nbytes);
    }
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

void write_safetensors(const std::string& path,
                       const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  std::vector<at::Tensor> contiguous;  // keeps the bytes alive until written
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == kMetadataKey)
      throw std::invalid_argument(path + ": a tensor cannot be called \"__metadata__\"");
    if (!tensor.defined())
      throw std::invalid_argument(path + ": tensor " + quoted(name) + " is undefined");
    const DtypeInfo* dtype = dtype_by_type(tensor.scalar_type());
    if (dtype == nullptr)
      throw std::invalid_argument(path + ": tensor " + quoted(name) + " has dtype " +
                                  std::string(c10::toString(tensor.scalar_type())) +
                                  ", not one of " + supported_list());
    at::Tensor t = tensor.device().is_cpu() ? tensor.contiguous() : tensor.cpu().contiguous();
    const uint64_t nbytes = t.numel() * dtype->item_size;
    header[name] = {{"dtype", dtype->name},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contiguous.push_back(std::move(t));
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;

  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const json::exception& e) {
    throw std::invalid_argument(path + ": cannot write header: " + e.what());
  }
  // pad with spaces so the data section starts 8-byte aligned, as the HF writer does.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  char prefix[8];
  for (int i = 0; i < 8; ++i)
    prefix[i] = static_cast<char>((static_cast<uint64_t>(header_text.size()) >> (8 * i)) & 0xff);

  std::vector<std::string_view> pieces{std::string_view(prefix, 8), header_text};
  for (const at::Tensor& t : contiguous)
    if (t.numel() > 0)
      pieces.emplace_back(static_cast<const char*>(t.data_ptr()), t.nbytes());
  write_file_atomically(path, pieces);
}

}  // namespace namm
