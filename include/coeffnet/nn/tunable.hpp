// coeffnet/nn/tunable.hpp: what parameter-efficient fine-tuning needs from a model.
//
// train::Finetuner is written against this interface only, so any model that implements it
// (ViTForImageClassification does; a BART or UNet can) is tuned by the same code. A model says
//   - how to switch coefficient attention on in its attention modules; their alphas are then the
//     parameters registered with ParamRole::alpha,
//   - which Linear layers LoRA may target (PEFT's target_modules), by dotted name,
//   - its classification head, how to replace it for new labels, and what the head reads,
//   - the generator its dropout masks come from (a checkpoint stores it).
// Everything else the fine-tuner asks the nn::Module: parameters, their roles, train/eval.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "module.hpp"

namespace coeffnet::nn {

template <class T>
class TunableModel : public Module<T> {
public:
    // Coefficient attention on in every attention module: each alpha (ParamRole::alpha) starts
    // at zero and trainable, with dropout p on alpha; residual false is the direct
    // parameterisation alpha' = alpha (the caller initialises alpha then). Off drops the alphas.
    virtual void enable_coeff(bool on, const CoeffSpec& spec) = 0;

    // The Linear layers LoRA adapts, by dotted name under this module.
    virtual std::vector<std::pair<std::string, Linear<T>*>> lora_targets() = 0;

    // The classification head, and a new one for `labels` initialised from `init`.
    virtual Linear<T>& head() = 0;
    virtual void reset_head(const std::vector<std::string>& labels, Generator& init) = 0;

    // features(x) is what the head reads ([B, D]), so head()(features(x)) == logits(x).
    virtual Tensor<T> features(const Tensor<T>& x) = 0;
    virtual Tensor<T> logits(const Tensor<T>& x) = 0;

    // The generator every dropout mask is drawn from in training mode.
    virtual Generator& dropout_generator() = 0;
};

}  // namespace coeffnet::nn
