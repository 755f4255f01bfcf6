// SwiGLU on a packed gate/up projection, gate first (the qwdeploy SwiGLU op's layout):
// y = silu(gate_up[:, :I]) * gate_up[:, I:], silu(g) = g / (1 + exp(-g)).
// gate_up: [rows, 2*I] -> y: [rows, I].
module {
  func.func @swiglu(%gate_up: tensor<?x?xf32>) -> tensor<?x?xf32>
      attributes {hacc.function_kind = #hacc.function_kind<HOST>, hacc.host_func_type = #hacc.host_func_type<host_entry>} {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c2 = arith.constant 2 : index
    %one = arith.constant 1.0 : f32
    %rows = tensor.dim %gate_up, %c0 : tensor<?x?xf32>
    %packed = tensor.dim %gate_up, %c1 : tensor<?x?xf32>
    %inter = arith.divui %packed, %c2 : index
    %gate = tensor.extract_slice %gate_up[0, 0] [%rows, %inter] [1, 1] : tensor<?x?xf32> to tensor<?x?xf32>
    %up = tensor.extract_slice %gate_up[0, %inter] [%rows, %inter] [1, 1] : tensor<?x?xf32> to tensor<?x?xf32>
    %half = tensor.empty(%rows, %inter) : tensor<?x?xf32>
    %neg = linalg.elemwise_unary {fun = #linalg.unary_fn<negf>} ins(%gate : tensor<?x?xf32>) outs(%half : tensor<?x?xf32>) -> tensor<?x?xf32>
    %exp = linalg.elemwise_unary {fun = #linalg.unary_fn<exp>} ins(%neg : tensor<?x?xf32>) outs(%half : tensor<?x?xf32>) -> tensor<?x?xf32>
    %denominator = linalg.elemwise_binary {fun = #linalg.binary_fn<add>} ins(%exp, %one : tensor<?x?xf32>, f32) outs(%half : tensor<?x?xf32>) -> tensor<?x?xf32>
    %silu = linalg.elemwise_binary {fun = #linalg.binary_fn<div>} ins(%gate, %denominator : tensor<?x?xf32>, tensor<?x?xf32>) outs(%half : tensor<?x?xf32>) -> tensor<?x?xf32>
    %y = linalg.elemwise_binary {fun = #linalg.binary_fn<mul>} ins(%silu, %up : tensor<?x?xf32>, tensor<?x?xf32>) outs(%half : tensor<?x?xf32>) -> tensor<?x?xf32>
    return %y : tensor<?x?xf32>
  }
}
