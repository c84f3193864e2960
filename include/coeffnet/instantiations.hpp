// coeffnet/instantiations.hpp: the templates that the compiled companion library (CMake target
// coeffnet::compiled, built from src/compiled_{float,double}.cpp) instantiates for float and double.
// Written once:
//   - with COEFFNET_COMPILED defined (coeffnet::compiled sets it for its users), <coeffnet/coeffnet.hpp>
//     declares each entry `extern template`, so a program does not instantiate, optimise and
//     compile these functions again: it calls the library's copies;
//   - src/compiled.hpp defines each entry (`template ...;`), once for float and once for double.
//
// COEFFNET_TEMPLATES(X, T) calls X(declaration) once per entry, T being the element type. An entry
// is a class template (all its members that are not templates themselves) or one function
// template's signature, without default arguments, as seen from namespace coeffnet. Templates
// whose other parameters are callables (for_each_row, with_unary, ...) cannot be listed; they are
// instantiated where they are used, which is inside the listed functions. Member functions defined
// in a class body are inline: GCC still instantiates those a program calls (to inline them), but
// does not emit a copy of one it does not inline.
//
// The library is compiled without OpenMP (its loops run on the calling thread), so a program that
// uses it cannot also use OpenMP through coeffnet::openmp: use the header-only target for threads.
#pragma once

// Templates without an element type, compiled once (in the float file, src/compiled_float.cpp):
// the caching allocator (core/caching_allocator.hpp), whose red-black trees cost every program
// that includes coeffnet.hpp 0.6 CPU s to compile.
#define COEFFNET_UNTYPED_TEMPLATES(X) X(class BasicCachingAllocator<std::mutex>)

#define COEFFNET_TEMPLATES(X, T)                                                                                  \
    /* tensors and autograd */                                                                                   \
    X(class Tensor<T>)                                                                                           \
    X(class backend::CpuOps<T>)                                                                                  \
    X(const backend::Ops<T>& backend::cpu_ops<T>())                                                              \
    X(Tensor<double> Tensor<T>::cast<double>() const)                                                            \
    X(Tensor<float> Tensor<T>::cast<float>() const)                                                              \
    X(void release_graph(std::shared_ptr<Node<T>>))                                                              \
    X(Tensor<T> record(Tensor<T>, const char*, const std::vector<Tensor<T>>&, BackwardFn<T>))                    \
    X(std::ostream& operator<<(std::ostream&, const Tensor<T>&))                                                 \
    X(Tensor<T> grad(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, bool, bool))                          \
    X(std::vector<Tensor<T>> detail::grad_impl(const std::vector<Tensor<T>>&, const std::vector<Tensor<T>>&,     \
                                               const std::vector<Tensor<T>>&, bool, bool))                       \
    /* arithmetic and pointwise functions */                                                                     \
    X(Tensor<T> add(const Tensor<T>&, const Tensor<T>&))                                                         \
    X(Tensor<T> sub(const Tensor<T>&, const Tensor<T>&))                                                         \
    X(Tensor<T> mul(const Tensor<T>&, const Tensor<T>&))                                                         \
    X(Tensor<T> div(const Tensor<T>&, const Tensor<T>&))                                                         \
    X(Tensor<T> scale(const Tensor<T>&, double))                                                                 \
    X(Tensor<T> add_scalar(const Tensor<T>&, double))                                                            \
    X(Tensor<T> rsub_scalar(const Tensor<T>&, double))                                                           \
    X(Tensor<T> rdiv_scalar(const Tensor<T>&, double))                                                           \
    X(Tensor<T> neg(const Tensor<T>&))                                                                           \
    X(Tensor<T> operator+(const Tensor<T>&, const Tensor<T>&))                                                   \
    X(Tensor<T> operator-(const Tensor<T>&, const Tensor<T>&))                                                   \
    X(Tensor<T> operator*(const Tensor<T>&, const Tensor<T>&))                                                   \
    X(Tensor<T> operator/(const Tensor<T>&, const Tensor<T>&))                                                   \
    X(Tensor<T> operator-(const Tensor<T>&))                                                                     \
    X(Tensor<T> operator*(const Tensor<T>&, double))                                                             \
    X(Tensor<T> operator*(double, const Tensor<T>&))                                                             \
    X(Tensor<T> operator/(const Tensor<T>&, double))                                                             \
    X(Tensor<T> operator+(const Tensor<T>&, double))                                                             \
    X(Tensor<T> operator-(const Tensor<T>&, double))                                                             \
    X(Tensor<T> operator+(double, const Tensor<T>&))                                                             \
    X(Tensor<T> operator-(double, const Tensor<T>&))                                                             \
    X(Tensor<T> operator/(double, const Tensor<T>&))                                                             \
    X(Tensor<double> to_double(const Tensor<T>&))                                                                \
    X(Tensor<float> to_float(const Tensor<T>&))                                                                  \
    X(Tensor<T> exp(const Tensor<T>&))                                                                           \
    X(Tensor<T> log(const Tensor<T>&))                                                                           \
    X(Tensor<T> sqrt(const Tensor<T>&))                                                                          \
    X(Tensor<T> square(const Tensor<T>&))                                                                        \
    X(Tensor<T> tanh(const Tensor<T>&))                                                                          \
    X(Tensor<T> sigmoid(const Tensor<T>&))                                                                       \
    X(Tensor<T> relu(const Tensor<T>&))                                                                          \
    X(Tensor<T> silu(const Tensor<T>&))                                                                          \
    X(Tensor<T> gelu(const Tensor<T>&, GeluApprox))                                                              \
    /* reductions */                                                                                             \
    X(Tensor<T> sum(const Tensor<T>&))                                                                           \
    X(Tensor<T> sum(const Tensor<T>&, const Shape&, bool))                                                       \
    X(Tensor<T> mean(const Tensor<T>&))                                                                          \
    X(Tensor<T> mean(const Tensor<T>&, const Shape&, bool))                                                      \
    X(ValuesIndices<T> max(const Tensor<T>&, int64_t, bool))                                                     \
    X(ValuesIndices<T> min(const Tensor<T>&, int64_t, bool))                                                     \
    X(Tensor<int64_t> argmax(const Tensor<T>&, int64_t, bool))                                                   \
    X(Tensor<int64_t> argmin(const Tensor<T>&, int64_t, bool))                                                   \
    X(Tensor<uint8_t> isclose(const Tensor<T>&, const Tensor<T>&, double, double))                               \
    X(bool allclose(const Tensor<T>&, const Tensor<T>&, double, double))                                         \
    /* matrix products, softmax, normalisation, dropout, embedding, shapes */                                    \
    X(Tensor<T> matmul(const Tensor<T>&, const Tensor<T>&))                                                      \
    X(Tensor<T> linear(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&))                                    \
    X(Tensor<T> softmax(const Tensor<T>&, const Tensor<T>&))                                                     \
    X(Tensor<T> softmax_backward(const Tensor<T>&, const Tensor<T>&))                                            \
    X(Tensor<T> log_softmax(const Tensor<T>&))                                                                   \
    X(Tensor<T> cross_entropy(const Tensor<T>&, const Tensor<int64_t>&, int64_t, Reduction))                     \
    X(Tensor<T> layer_norm(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, double))                        \
    X(Tensor<T> dropout_mask(const Shape&, double, Generator&))                                                  \
    X(Tensor<T> dropout(const Tensor<T>&, double, Generator&, bool))                                             \
    X(Tensor<T> embedding(const Tensor<int64_t>&, const Tensor<T>&))                                             \
    X(Tensor<T> concat(const std::vector<Tensor<T>>&, int64_t))                                                  \
    X(std::vector<Tensor<T>> split(const Tensor<T>&, const std::vector<int64_t>&, int64_t))                      \
    X(std::vector<Tensor<T>> chunk(const Tensor<T>&, int64_t, int64_t))                                          \
    /* attention */                                                                                              \
    X(AttentionResult<T> attention(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, const AttentionOptions&, \
                                   const Tensor<T>&, const Tensor<T>&))                                          \
    X(AttentionResult<T> coeff_attention(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, const Tensor<T>&,  \
                                         const AttentionOptions&, const Tensor<T>&, const Tensor<T>&))           \
    X(Tensor<T> mix_heads(const Tensor<T>&, const Tensor<T>&))                                                   \
    X(Tensor<T> alpha_prime(const Tensor<T>&, const DropoutDraw<T>&, bool))                                      \
    X(Tensor<T> alpha_prime(const Tensor<T>&, const AttentionOptions&))                                          \
    X(Tensor<T> split_heads(const Tensor<T>&, int64_t))                                                          \
    X(Tensor<T> merge_heads(const Tensor<T>&))                                                                   \
    /* modules and optimisers */                                                                                 \
    X(void nn::init_normal(Tensor<T>&, Generator&, double))                                                      \
    X(void nn::init_uniform(Tensor<T>&, Generator&, double))                                                     \
    X(class nn::Module<T>)                                                                                       \
    X(class nn::Linear<T>)                                                                                       \
    X(class nn::LayerNorm<T>)                                                                                    \
    X(class nn::CoeffSelfAttention<T>)                                                                           \
    X(class nn::CoeffAttention<T>)                                                                               \
    X(class nn::Embedding<T>)                                                                                    \
    X(class nn::Dropout<T>)                                                                                      \
    X(class nn::Activation<T>)                                                                                   \
    X(struct nn::GELU<T>)                                                                                        \
    X(struct nn::ReLU<T>)                                                                                        \
    X(class nn::Sequential<T>)                                                                                   \
    X(class nn::MLP<T>)                                                                                          \
    X(class Optimizer<T>)                                                                                        \
    X(class SGD<T>)                                                                                              \
    X(class AdamW<T>)                                                                                            \
    X(double clip_grad_norm_(const std::vector<Tensor<T>>&, double))
