// The library's one entry point: SessionOptions.register_custom_ops_library calls RegisterCustomOps.
#include <mutex>
#include <vector>

#include "adapter.h"

namespace {

// Domains must outlive every session that uses them; keep them until the library unloads.
std::vector<Ort::CustomOpDomain>& domains() {
  static std::vector<Ort::CustomOpDomain> all;
  return all;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  Ort::InitApi(api_base->GetApi(ORT_API_VERSION));
  return qwd::ort::guard([&] {
    static std::mutex lock;
    std::lock_guard<std::mutex> hold(lock);
    Ort::CustomOpDomain domain("qwdeploy");
    for (OrtCustomOp* op : qwd::ort::cpu_ops()) domain.Add(op);
    for (OrtCustomOp* op : qwd::ort::cuda_ops()) domain.Add(op);
    Ort::UnownedSessionOptions(options).Add(domain);
    domains().push_back(std::move(domain));
  });
}
