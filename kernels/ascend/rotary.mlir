// Rotary embedding, rotate-half layout (transformers' and kernels/reference.py's): with x1, x2 the
// halves of each head, y = concat(x1*cos - x2*sin, x2*cos + x1*sin).
// x: [tokens, heads, head_dim], cos, sin: [tokens, head_dim/2] (the cache rows at each token's
// position, gathered by the graph) -> y: [tokens, heads, head_dim].
module {
  func.func @rotary(%x: tensor<?x?x?xf32>, %cos: tensor<?x?xf32>, %sin: tensor<?x?xf32>) -> tensor<?x?x?xf32>
      attributes {hacc.function_kind = #hacc.function_kind<HOST>, hacc.host_func_type = #hacc.host_func_type<host_entry>} {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c2 = arith.constant 2 : index
    %tokens = tensor.dim %x, %c0 : tensor<?x?x?xf32>
    %heads = tensor.dim %x, %c1 : tensor<?x?x?xf32>
    %head_dim = tensor.dim %x, %c2 : tensor<?x?x?xf32>
    %half = arith.divui %head_dim, %c2 : index
    %x1 = tensor.extract_slice %x[0, 0, 0] [%tokens, %heads, %half] [1, 1, 1] : tensor<?x?x?xf32> to tensor<?x?x?xf32>
    %x2 = tensor.extract_slice %x[0, 0, %half] [%tokens, %heads, %half] [1, 1, 1] : tensor<?x?x?xf32> to tensor<?x?x?xf32>
    %halves = tensor.empty(%tokens, %heads, %half) : tensor<?x?x?xf32>
    %cos_heads = linalg.broadcast ins(%cos : tensor<?x?xf32>) outs(%halves : tensor<?x?x?xf32>) dimensions = [1]
    %sin_heads = linalg.broadcast ins(%sin : tensor<?x?xf32>) outs(%halves : tensor<?x?x?xf32>) dimensions = [1]
    %x1_cos = linalg.elemwise_binary {fun = #linalg.binary_fn<mul>} ins(%x1, %cos_heads : tensor<?x?x?xf32>, tensor<?x?x?xf32>) outs(%halves : tensor<?x?x?xf32>) -> tensor<?x?x?xf32>
    %x2_sin = linalg.elemwise_binary {fun = #linalg.binary_fn<mul>} ins(%x2, %sin_heads : tensor<?x?x?xf32>, tensor<?x?x?xf32>) outs(%halves : tensor<?x?x?xf32>) -> tensor<?x?x?xf32>
    %first = linalg.elemwise_binary {fun = #linalg.binary_fn<sub>} ins(%x1_cos, %x2_sin : tensor<?x?x?xf32>, tensor<?x?x?xf32>) outs(%halves : tensor<?x?x?xf32>) -> tensor<?x?x?xf32>
    %x2_cos = linalg.elemwise_binary {fun = #linalg.binary_fn<mul>} ins(%x2, %cos_heads : tensor<?x?x?xf32>, tensor<?x?x?xf32>) outs(%halves : tensor<?x?x?xf32>) -> tensor<?x?x?xf32>
    %x1_sin = linalg.elemwise_binary {fun = #linalg.binary_fn<mul>} ins(%x1, %sin_heads : tensor<?x?x?xf32>, tensor<?x?x?xf32>) outs(%halves : tensor<?x?x?xf32>) -> tensor<?x?x?xf32>
    %second = linalg.elemwise_binary {fun = #linalg.binary_fn<add>} ins(%x2_cos, %x1_sin : tensor<?x?x?xf32>, tensor<?x?x?xf32>) outs(%halves : tensor<?x?x?xf32>) -> tensor<?x?x?xf32>
    %y = tensor.concat dim(2) %first, %second : (tensor<?x?x?xf32>, tensor<?x?x?xf32>) -> tensor<?x?x?xf32>
    return %y : tensor<?x?x?xf32>
  }
}
