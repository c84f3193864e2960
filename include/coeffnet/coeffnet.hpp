// coeffnet/coeffnet.hpp: the umbrella header. Its path is stable; include this one.
//
// coeffnet is a header-only C++20 tensor and reverse-mode autograd library built around
// coefficient attention (Coeff-Tuning): each head's attention map is a graph filter, and a
// learnable H x H matrix mixes the heads' filters into new ones.
//
// This header is the tensor library: tensors, autograd, ops, modules, optimisers. Files and
// models are separate includes, so a program that only computes does not parse a JSON library:
//   <coeffnet/io/safetensors.hpp>, <coeffnet/io/hf.hpp>, <coeffnet/io/adapter.hpp>   files
//   <coeffnet/models/vit.hpp>                                                       models
//   <coeffnet/data/procedural.hpp>, <coeffnet/train/finetune.hpp>                   data, fine-tuning
#pragma once

#define COEFFNET_VERSION_MAJOR 0
#define COEFFNET_VERSION_MINOR 1
#define COEFFNET_VERSION_PATCH 0

#include "core/device.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/rng.hpp"
#include "tensor/tensor.hpp"
#include "tensor/print.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/matmul.hpp"
#include "ops/softmax.hpp"
#include "ops/layernorm.hpp"
#include "ops/dropout.hpp"
#include "ops/embedding.hpp"
#include "ops/shape.hpp"
#include "ops/attention.hpp"
#include "ops/random.hpp"
#include "nn/module.hpp"
#include "nn/layers.hpp"
#include "train/optim.hpp"
#include "train/clip.hpp"

// With COEFFNET_COMPILED (set by the CMake target coeffnet::compiled for the programs that link it),
// the float and double instantiations of instantiations.hpp's templates are declared extern: the
// program calls the compiled companion library's copies instead of compiling its own. Those copies
// and the program must agree on OpenMP (parallel_for's inline body differs with and without it):
// coeffnet::compiled is built without it; this project's own programs link copies built with it
// (the internal target coeffnet_instances), which also define COEFFNET_COMPILED_OPENMP.
#ifdef COEFFNET_COMPILED
#if defined(_OPENMP) && !defined(COEFFNET_COMPILED_OPENMP)
#error "coeffnet::compiled is built without OpenMP: link coeffnet::openmp with the header-only target instead"
#endif
#if !defined(_OPENMP) && defined(COEFFNET_COMPILED_OPENMP)
#error "these compiled instantiations were built with OpenMP: compile this program with it too (-fopenmp)"
#endif
// Likewise the GEMM (backend/cpu_gemm.hpp): coeffnet::compiled's is Eigen's; coeffnet_instances's
// is BLIS's where the project found it (COEFFNET_COMPILED_BLIS).
#if defined(COEFFNET_BLIS) && !defined(COEFFNET_COMPILED_BLIS)
#error "coeffnet::compiled is built without BLIS: link coeffnet::blis with the header-only target instead"
#endif
#if !defined(COEFFNET_BLIS) && defined(COEFFNET_COMPILED_BLIS)
#error "these compiled instantiations were built with BLIS: link coeffnet::blis too (COEFFNET_BLIS)"
#endif
#include "instantiations.hpp"
#define COEFFNET_EXTERN_TEMPLATE_(...) extern template __VA_ARGS__;
namespace coeffnet {
COEFFNET_TEMPLATES(COEFFNET_EXTERN_TEMPLATE_, float)
COEFFNET_TEMPLATES(COEFFNET_EXTERN_TEMPLATE_, double)
COEFFNET_UNTYPED_TEMPLATES(COEFFNET_EXTERN_TEMPLATE_)
}  // namespace coeffnet
#undef COEFFNET_EXTERN_TEMPLATE_
#endif
