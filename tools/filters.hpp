// tools/filters.hpp: `coeffnet vit filters`, the graph-filter view of one ViT layer.
//
//   coeffnet vit filters --model DIR --image FILE [--adapter DIR] [--layer L]
//                        [--query TOKEN | --query-xy X,Y] --out FILE.png [--json] [--dump FILE] [--html FILE]
//
// Each head's attention map P_h is a graph filter over the tokens; its row for one query token
// says how much of every token's value that query takes. The command runs the model on the image
// and draws, for the chosen layer (default: the last) and query (default: the CLS token, 0;
// --query-xy picks the patch under a point of the image file), each head's filter F_h over the
// image patches and, with an adapter that carries alpha, the mixed filters Fhat_h = sum_i
// alpha'[h, i] F_i (alpha' = I + alpha) and alpha' itself (tools/filters_render.hpp draws).
// --json prints the numbers drawn; --dump writes every layer's maps before and after mixing
// (layer.<l>.maps, layer.<l>.mixed_maps, [1, H, N, N] float32); --html writes a page where a
// click picks the query and sliders change alpha'.
#pragma once

#include "args.hpp"

namespace coeffnet::tools {

void declare_filters(cli::Command& vit);

}  // namespace coeffnet::tools
