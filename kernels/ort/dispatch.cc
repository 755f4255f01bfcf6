// The portable library's entry point. A portable build compiles the kernels once per ISA variant
// (libqwdeploy_kernels.<variant>.so beside this file); this library, compiled for the baseline ISA,
// picks the best variant this CPU runs when ONNX Runtime registers it, and hands the registration on.
// An artifact exported on one machine thus runs on any CPU of the same architecture.
// The variant names match PORTABLE_VARIANTS in kernels/targets.py, best first.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "onnxruntime_c_api.h"

#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace {

struct Variant {
  const char* name;
  bool (*runs_here)();
};

bool always() { return true; }

#if defined(__x86_64__)
bool avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
bool avx_vnni() { return avx2() && __builtin_cpu_supports("avxvnni"); }
bool avx512_vnni() {
  // libgcc's checks include the OS saving the wider register state (XCR0), not just CPUID.
  return avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni");
}
constexpr Variant kVariants[] = {{"avx512_vnni", avx512_vnni}, {"avx_vnni", avx_vnni}, {"avx2", avx2},
                                 {"baseline", always}};
#elif defined(__aarch64__)
bool dotprod() { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }
constexpr Variant kVariants[] = {{"dotprod", dotprod}, {"baseline", always}};
#else
constexpr Variant kVariants[] = {{"baseline", always}};
#endif

std::string folder() {
  Dl_info info{};
  dladdr(reinterpret_cast<void*>(&folder), &info);
  std::string path = info.dli_fname ? info.dli_fname : "";
  return path.substr(0, path.rfind('/') + 1);
}

std::string variant_path(const char* name) { return folder() + "libqwdeploy_kernels." + name + ".so"; }

bool present(const char* name) { return access(variant_path(name).c_str(), R_OK) == 0; }

// QWDEPLOY_KERNELS_VARIANT names a lesser build to use instead (to compare or test them); still only one
// this CPU runs.
const char* chosen() {
  const char* wanted = getenv("QWDEPLOY_KERNELS_VARIANT");
  for (const Variant& v : kVariants)
    if ((wanted == nullptr || std::strcmp(wanted, v.name) == 0) && v.runs_here() && present(v.name)) return v.name;
  return nullptr;
}

}  // namespace

// Which build RegisterCustomOps loads on this CPU (null when none of them is beside this library).
extern "C" __attribute__((visibility("default"))) const char* qwdeploy_kernels_variant() { return chosen(); }

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  const char* name = chosen();
  if (name == nullptr)
    return api->CreateStatus(ORT_FAIL, ("qwdeploy kernels: no build in " + folder() + " runs on this CPU" +
                                        (getenv("QWDEPLOY_KERNELS_VARIANT") ? " as QWDEPLOY_KERNELS_VARIANT asks" : ""))
                                           .c_str());
  // Never unloaded: the domains it registers live as long as the process's sessions.
  void* handle = dlopen(variant_path(name).c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return api->CreateStatus(ORT_FAIL, dlerror());
  using Register = OrtStatus*(ORT_API_CALL*)(OrtSessionOptions*, const OrtApiBase*);
  auto next = reinterpret_cast<Register>(dlsym(handle, "RegisterCustomOps"));
  if (next == nullptr) return api->CreateStatus(ORT_FAIL, dlerror());
  return next(options, api_base);
}
