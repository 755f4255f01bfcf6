// Built instead of cuda_ops.cc when the library is configured without CUDA.
#include "adapter.h"

namespace qwd::ort {

std::vector<OrtCustomOp*> cuda_ops() { return {}; }

}  // namespace qwd::ort
