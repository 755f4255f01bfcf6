// Residual add fused with the RMSNorm that follows it (every decoder layer has two):
// h = x + residual; y = h * rsqrt(mean(h^2) + eps) * w. Returns (y, h): h is the next residual.
// x, residual: [rows, hidden], w: [hidden] -> y, h: [rows, hidden].
module {
  func.func @add_rms_norm(%x: tensor<?x?xf32>, %residual: tensor<?x?xf32>, %w: tensor<?xf32>, %eps: f32) -> (tensor<?x?xf32>, tensor<?x?xf32>)
      attributes {hacc.function_kind = #hacc.function_kind<HOST>, hacc.host_func_type = #hacc.host_func_type<host_entry>} {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %zero = arith.constant 0.0 : f32
    %one = arith.constant 1.0 : f32
    %rows = tensor.dim %x, %c0 : tensor<?x?xf32>
    %hidden = tensor.dim %x, %c1 : tensor<?x?xf32>
    %hidden_i = arith.index_cast %hidden : index to i64
    %hidden_f = arith.sitofp %hidden_i : i64 to f32
    %inv_hidden = arith.divf %one, %hidden_f : f32
    %matrix = tensor.empty(%rows, %hidden) : tensor<?x?xf32>
    %row = tensor.empty(%rows) : tensor<?xf32>
    %h = linalg.elemwise_binary {fun = #linalg.binary_fn<add>} ins(%x, %residual : tensor<?x?xf32>, tensor<?x?xf32>) outs(%matrix : tensor<?x?xf32>) -> tensor<?x?xf32>
    %squares = linalg.elemwise_binary {fun = #linalg.binary_fn<mul>} ins(%h, %h : tensor<?x?xf32>, tensor<?x?xf32>) outs(%matrix : tensor<?x?xf32>) -> tensor<?x?xf32>
    %init = linalg.fill ins(%zero : f32) outs(%row : tensor<?xf32>) -> tensor<?xf32>
    %sum = linalg.reduce {arith.addf} ins(%squares : tensor<?x?xf32>) outs(%init : tensor<?xf32>) dimensions = [1]
    %mean = linalg.elemwise_binary {fun = #linalg.binary_fn<mul>} ins(%sum, %inv_hidden : tensor<?xf32>, f32) outs(%row : tensor<?xf32>) -> tensor<?xf32>
    %shifted = linalg.elemwise_binary {fun = #linalg.binary_fn<add>} ins(%mean, %eps : tensor<?xf32>, f32) outs(%row : tensor<?xf32>) -> tensor<?xf32>
    %scale = hfusion.elemwise_unary {fun = #hfusion.unary_fn<rsqrt>} ins(%shifted : tensor<?xf32>) outs(%row : tensor<?xf32>) -> tensor<?xf32>
    %scale_rows = linalg.broadcast ins(%scale : tensor<?xf32>) outs(%matrix : tensor<?x?xf32>) dimensions = [1]
    %w_rows = linalg.broadcast ins(%w : tensor<?xf32>) outs(%matrix : tensor<?x?xf32>) dimensions = [0]
    %normed = linalg.elemwise_binary {fun = #linalg.binary_fn<mul>} ins(%h, %scale_rows : tensor<?x?xf32>, tensor<?x?xf32>) outs(%matrix : tensor<?x?xf32>) -> tensor<?x?xf32>
    %y = linalg.elemwise_binary {fun = #linalg.binary_fn<mul>} ins(%normed, %w_rows : tensor<?x?xf32>, tensor<?x?xf32>) outs(%matrix : tensor<?x?xf32>) -> tensor<?x?xf32>
    return %y, %h : tensor<?x?xf32>, tensor<?x?xf32>
  }
}
