// coeffnet/io/safetensors.hpp: reading and writing safetensors files, the format of Hugging
// Face checkpoints (https://github.com/huggingface/safetensors).
//
//     const io::SafeTensors st = io::SafeTensors::open("model.safetensors");
//     Tensor<float> w = st.get<float>("encoder.weight");     // zero-copy when aligned
//     io::SafeTensorsWriter out;
//     out.add("encoder.weight", w);
//     out.write("copy.safetensors");
//
// One header per job; this one includes them all:
//   io/dtype.hpp               the 22 dtypes: names, sizes, dtype_of<T>()
//   io/float8.hpp              the values of the 8-bit float dtypes
//   io/utf8.hpp                UTF-8 validation (headers and tensor names)
//   io/safetensors_header.hpp  the format, and the header parsed and checked against its rules
//   io/file.hpp                files mapped for reading and replaced atomically
//   io/safetensors_reader.hpp  SafeTensors: a checked file, tensors read from its mapping
//   io/safetensors_writer.hpp  SafeTensorsWriter: files as the reference writer writes them
#pragma once

#include "dtype.hpp"
#include "file.hpp"
#include "float8.hpp"
#include "safetensors_header.hpp"
#include "safetensors_reader.hpp"
#include "safetensors_writer.hpp"
#include "utf8.hpp"
