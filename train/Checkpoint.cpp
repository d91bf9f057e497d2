// Checkpoint writer/reader (see Checkpoint.h): HDF5 for tensors, JSON for the manifest and meta.
#include "train/Checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "core/util/Check.h"
#include "core/util/Logging.h"
#include "train/Sha256.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace loom::train {

namespace {

const char* kFiles[] = {"tensors.h5", "meta.json"};

[[noreturn]] void fail(const std::string& msg) { throw CheckpointError("checkpoint: " + msg); }

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) fail("cannot open " + path + " to flush it");
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail("fsync failed for " + path);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) fail("cannot write " + path);
  fsync_path(path, false);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct H5Type {
  hid_t mem;
  const char* tag;  // stored in the "loom_dtype" attribute
};

H5Type h5_type(DType dt) {
  switch (dt) {
    case DType::F32: return {H5T_NATIVE_FLOAT, "f32"};
    case DType::F64: return {H5T_NATIVE_DOUBLE, "f64"};
    case DType::BF16: return {H5T_NATIVE_UINT16, "bf16"};
    case DType::F16: return {H5T_NATIVE_UINT16, "f16"};
    case DType::I32: return {H5T_NATIVE_INT32, "i32"};
    case DType::I64: return {H5T_NATIVE_INT64, "i64"};
    case DType::Bool: return {H5T_NATIVE_UINT8, "bool"};
  }
  fail("unsupported dtype");
}

void write_tensors(const std::string& path, const std::map<std::string, Tensor>& tensors) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) fail("cannot create " + path);
  for (const auto& [name, t0] : tensors) {
    Tensor t = t0.detach().to(Device::cpu()).contiguous();
    std::vector<hsize_t> dims(t.shape().begin(), t.shape().end());
    hid_t space = dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(int(dims.size()), dims.data(), nullptr);
    H5Type ty = h5_type(t.dtype());
    hid_t ds = H5Dcreate2(file, name.c_str(), ty.mem, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = ds < 0 ? -1 : (t.numel() ? H5Dwrite(ds, ty.mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw_data()) : 0);
    if (ds >= 0) {
      hid_t aspace = H5Screate(H5S_SCALAR);
      hid_t atype = H5Tcopy(H5T_C_S1);
      H5Tset_size(atype, std::strlen(ty.tag) + 1);
      hid_t attr = H5Acreate2(ds, "loom_dtype", atype, aspace, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(attr, atype, ty.tag);
      H5Aclose(attr); H5Tclose(atype); H5Sclose(aspace);
      H5Dclose(ds);
    }
    H5Sclose(space);
    if (st < 0) {
      H5Fclose(file);
      H5Pclose(lcpl);
      fail("cannot write tensor \"" + name + "\" to " + path);
    }
  }
  H5Pclose(lcpl);
  if (H5Fclose(file) < 0) fail("cannot close " + path);
  fsync_path(path, false);
}

// Collects the names of all datasets in the file.
herr_t visit_cb(hid_t, const char* name, const H5O_info_t* info, void* data) {
  if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}

Tensor read_dataset(hid_t file, const std::string& name, const std::string& path) {
  hid_t ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  if (ds < 0) fail("cannot open tensor \"" + name + "\" in " + path);
  char tag[16] = {0};
  hid_t attr = H5Aopen(ds, "loom_dtype", H5P_DEFAULT);
  if (attr >= 0) {
    hid_t atype = H5Aget_type(attr);
    if (H5Tget_size(atype) < sizeof(tag)) H5Aread(attr, atype, tag);
    H5Tclose(atype);
    H5Aclose(attr);
  }
  DType dt;
  try {
    dt = dtype_from_name(tag);
  } catch (const ValueError&) {
    H5Dclose(ds);
    fail("tensor \"" + name + "\" in " + path + " has unknown dtype tag \"" + tag + "\"");
  }
  hid_t space = H5Dget_space(ds);
  int nd = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(size_t(std::max(nd, 0)));
  if (nd > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  H5Sclose(space);
  Tensor t = Tensor::empty(Shape(dims.begin(), dims.end()), dt);
  herr_t st = t.numel() ? H5Dread(ds, h5_type(dt).mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw_data()) : 0;
  H5Dclose(ds);
  if (st < 0) fail("cannot read tensor \"" + name + "\" from " + path);
  return t;
}

std::map<std::string, Tensor> read_tensors(const std::string& path) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) fail("cannot open " + path + " as HDF5");
  std::vector<std::string> names;
  H5Ovisit2(file, H5_INDEX_NAME, H5_ITER_NATIVE, visit_cb, &names, H5O_INFO_BASIC);
  std::map<std::string, Tensor> out;
  try {
    for (const std::string& n : names) out[n] = read_dataset(file, n, path);
  } catch (...) {
    H5Fclose(file);
    throw;
  }
  H5Fclose(file);
  return out;
}

json read_manifest(const std::string& dir) {
  std::string path = dir + "/MANIFEST.json";
  if (!fs::exists(path)) fail(path + " is missing (incomplete checkpoint)");
  json m;
  try {
    m = json::parse(read_text(path));
  } catch (const json::exception& e) {
    fail(path + " is not valid JSON: " + e.what());
  }
  if (!m.is_object() || m.value("format", "") != kCheckpointFormat)
    fail(path + ": expected format \"" + kCheckpointFormat + "\", got " +
         (m.is_object() && m.contains("format") ? m["format"].dump() : "none"));
  int version = m.value("version", -1);
  if (version != kCheckpointVersion)
    fail(path + ": expected version " + std::to_string(kCheckpointVersion) + ", got " +
         std::to_string(version) + (version > kCheckpointVersion ? " (written by a newer Loom)" : ""));
  if (!m.contains("files") || !m["files"].is_object()) fail(path + ": no \"files\" table");
  return m;
}

// Sizes only (cheap): used when scanning for the newest complete checkpoint.
bool sizes_match(const std::string& dir, const json& m) {
  for (const auto& [name, info] : m["files"].items()) {
    std::error_code ec;
    auto size = fs::file_size(dir + "/" + name, ec);
    if (ec || size != info.value("bytes", uint64_t(0))) return false;
  }
  return true;
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08lld", static_cast<long long>(step));
  return buf;
}

std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt, int keep_last) {
  LOOM_CHECK_T(CheckpointError, ckpt.step >= 0, "checkpoint: expected step >= 0, got ", ckpt.step);
  fs::create_directories(root);
  std::string final_dir = root + "/" + checkpoint_dir_name(ckpt.step);
  std::string tmp = final_dir + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  write_tensors(tmp + "/tensors.h5", ckpt.tensors);
  json meta(ckpt.meta);
  meta["step"] = std::to_string(ckpt.step);
  write_text(tmp + "/meta.json", meta.dump(1));
  json manifest = {{"format", kCheckpointFormat}, {"version", kCheckpointVersion},
                   {"step", ckpt.step}, {"files", json::object()}};
  for (const char* f : kFiles) {
    std::string p = tmp + "/" + f;
    manifest["files"][f] = {{"bytes", fs::file_size(p)}, {"sha256", sha256_file(p)}};
  }
  write_text(tmp + "/MANIFEST.json", manifest.dump(1));
  fsync_path(tmp, true);
  fs::remove_all(final_dir);  // an older save of the same step
  fs::rename(tmp, final_dir);
  fsync_path(root, true);
  write_text(root + "/latest.tmp", checkpoint_dir_name(ckpt.step) + "\n");
  fs::rename(root + "/latest.tmp", root + "/latest");
  fsync_path(root, true);
  if (keep_last > 0) {
    std::vector<std::string> complete;
    for (const auto& e : fs::directory_iterator(root)) {
      std::string n = e.path().filename().string();
      if (e.is_directory() && n.rfind("step_", 0) == 0 && n.find(".tmp") == std::string::npos)
        complete.push_back(n);
    }
    std::sort(complete.begin(), complete.end());
    for (size_t i = 0; i + size_t(keep_last) < complete.size(); ++i)
      fs::remove_all(root + "/" + complete[i]);
  }
  return final_dir;
}

std::string find_latest_checkpoint(const std::string& root) {
  if (!fs::is_directory(root)) return "";
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(root)) {
    std::string n = e.path().filename().string();
    if (!e.is_directory() || n.rfind("step_", 0) != 0) continue;
    if (n.find(".tmp") != std::string::npos) {
      LOG(WARN) << "checkpoint: ignoring incomplete checkpoint " << e.path().string();
      continue;
    }
    dirs.push_back(n);
  }
  std::sort(dirs.rbegin(), dirs.rend());
  for (const std::string& n : dirs) {
    std::string dir = root + "/" + n;
    try {
      if (sizes_match(dir, read_manifest(dir))) return dir;
      LOG(WARN) << "checkpoint: ignoring " << dir << " (file sizes disagree with its manifest)";
    } catch (const CheckpointError& e) {
      LOG(WARN) << "checkpoint: ignoring " << dir << ": " << e.what();
    }
  }
  return "";
}

void verify_checkpoint(const std::string& dir) {
  json m = read_manifest(dir);
  for (const char* f : kFiles) {
    if (!m["files"].contains(f)) fail(dir + "/MANIFEST.json does not list " + f);
  }
  for (const auto& [name, info] : m["files"].items()) {
    std::string p = dir + "/" + name;
    std::error_code ec;
    uint64_t size = fs::file_size(p, ec);
    if (ec) fail(p + " is missing");
    uint64_t want = info.value("bytes", uint64_t(0));
    if (size != want)
      fail(p + ": expected " + std::to_string(want) + " bytes, got " + std::to_string(size) +
           " (truncated or modified)");
    std::string hash = sha256_file(p), want_hash = info.value("sha256", "");
    if (hash != want_hash)
      fail(p + ": expected sha256 " + want_hash + ", got " + hash + " (corrupt)");
  }
}

Checkpoint load_checkpoint(const std::string& dir) {
  verify_checkpoint(dir);
  Checkpoint ck;
  ck.tensors = read_tensors(dir + "/tensors.h5");
  json meta;
  try {
    meta = json::parse(read_text(dir + "/meta.json"));
  } catch (const json::exception& e) {
    fail(dir + "/meta.json is not valid JSON: " + e.what());
  }
  for (const auto& [k, v] : meta.items()) {
    if (k == "step") continue;
    ck.meta[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  ck.step = std::stoll(meta.value("step", "0"));
  return ck;
}

}  // namespace loom::train
