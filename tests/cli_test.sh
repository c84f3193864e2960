#!/usr/bin/env bash
# tests/cli_test.sh: end-to-end tests of the `coeffnet` command-line tool (tools/coeffnet.cpp):
# exit codes, messages, and the JSON it prints checked against numbers from Python's
# safetensors and transformers (the fixtures in tests/data). Needs bash and python3 (stdlib only).
#
#   bash tests/cli_test.sh build/tools/coeffnet            # every scenario
#   bash tests/cli_test.sh build/tools/coeffnet inspect_file predict_pixels
#
# ctest runs each scenario as its own test (tools/CMakeLists.txt). Exit status: 1 when a check
# failed (each failed check prints one FAIL line), else 77 when a scenario was skipped because an
# optional tool is missing (filters_html: chromium; ctest reports it skipped), else 0.
set -u
[ $# -ge 1 ] || { echo "usage: $0 COEFFNET [SCENARIO...]" >&2; exit 2; }
BIN=$1
shift
DATA=$(cd "$(dirname "$0")/data" && pwd)
MODELS=$(cd "$(dirname "$0")/../models" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0
skipped=0
scenario=""

fail() {
  echo "FAIL [$scenario]: $*" >&2
  failures=$((failures + 1))
}

# skip REASON: the scenario cannot run here (an optional tool is missing); return right after it.
skip() {
  echo "skip [$scenario]: $*" >&2
  skipped=$((skipped + 1))
}

# run ARGS...: runs coeffnet; leaves its exit code in $rc, stdout in $TMP/out, stderr in $TMP/err.
run() {
  last="coeffnet $*"
  "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
}
expect_rc() {
  [ "$rc" -eq "$1" ] || fail "$last: exit code $rc, expected $1; stderr: $(head -c 600 "$TMP/err")"
}
out_has() { grep -qF -- "$1" "$TMP/out" || fail "$last: stdout lacks '$1'"; }
err_has() { grep -qF -- "$1" "$TMP/err" || fail "$last: stderr lacks '$1': $(head -c 600 "$TMP/err")"; }
out_empty() { [ ! -s "$TMP/out" ] || fail "$last: stdout should be empty"; }
err_empty() { [ ! -s "$TMP/err" ] || fail "$last: stderr should be empty: $(head -c 600 "$TMP/err")"; }

# A usage error: exit 2, the message and the usage line on stderr, nothing on stdout.
expect_usage() {
  local want=$1
  shift
  run "$@"
  expect_rc 2
  err_has "$want"
  err_has "usage: coeffnet"
  out_empty
}
# A bad file or model: exit 1, "coeffnet: error: " and the message on stderr.
expect_error() {
  local want=$1
  shift
  run "$@"
  expect_rc 1
  err_has "coeffnet: error: "
  err_has "$want"
  out_empty
}

# Python helpers: read and write safetensors files with the standard library only.
cat >"$TMP/st.py" <<'PY'
import json, struct

def read(path):
    """{name: (dtype, shape, flat list)} for the F32 and I64 tensors of a safetensors file."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        s, e = t["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        fmt = {"F32": "f", "I64": "q"}.get(t["dtype"])
        if fmt:
            out[name] = (t["dtype"], t["shape"], list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw)))
    return out

def write(path, tensors, metadata=None):
    """tensors: {name: (shape, flat list of floats)}, written as F32."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (shape, values) in tensors.items():
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
PY

# json_check EXPR...: each Python expression must hold for j, the JSON coeffnet printed (st:
# the helpers above; D: the test data folder).
json_check() {
  PYTHONPATH="$TMP" python3 - "$TMP/out" "$DATA" "$@" <<'PY' || fail "$last: JSON checks failed"
import json, math, sys
import st
try:
    j = json.load(open(sys.argv[1]))
except Exception as e:
    print("  stdout is not JSON:", e, file=sys.stderr)
    sys.exit(1)
env = {"j": j, "st": st, "D": sys.argv[2], "math": math}
bad = 0
for expr in sys.argv[3:]:
    try:
        ok = eval(expr, env)
    except Exception as e:
        ok, expr = False, f"{expr}  ({type(e).__name__}: {e})"
    if not ok:
        print("  not true:", expr, file=sys.stderr)
        bad += 1
sys.exit(1 if bad else 0)
PY
}

# ---- scenarios ------------------------------------------------------------------------------

t_help() {
  run --help
  expect_rc 0
  out_has "usage: coeffnet COMMAND"
  out_has "inspect"
  out_has "vit predict"
  err_empty
  run -h
  expect_rc 0
  run inspect --help
  expect_rc 0
  out_has "usage: coeffnet inspect [--json] PATH"
  out_has "-h, --help"
  run vit --help
  expect_rc 0
  out_has "predict"
  run vit predict --help
  expect_rc 0
  out_has "usage: coeffnet vit predict --model DIR (--image FILE... | --pixels FILE) [--top K] [--adapter DIR] [--json]"
  out_has "(default 5)"
  out_has "(required)"
  run vit predict --model nowhere --help  # --help wins over everything else
  expect_rc 0
}

t_usage_errors() {
  expect_usage "missing command"
  expect_usage "unknown command 'frobnicate'" frobnicate
  expect_usage "did you mean 'inspect'?" inspct x
  expect_usage "missing PATH" inspect
  expect_usage "unexpected argument 'b'" inspect a b
  expect_usage "unknown option '--jsn' (did you mean '--json'?)" inspect --jsn x
  expect_usage "--json takes no value" inspect --json=yes x
  expect_usage "missing command" vit
  expect_usage "unknown command 'predcit' (did you mean 'predict'?)" vit predcit
  expect_usage "missing --model DIR" vit predict --image x.png
  expect_usage "give one of --image or --pixels" vit predict --model "$DATA/vit_cls"
  expect_usage "--image and --pixels cannot be used together" vit predict --model "$DATA/vit_cls" --image a.png --pixels b
  expect_usage "--top: must be at least 1, got 0" vit predict --model "$DATA/vit_cls" --pixels x --top 0
  expect_usage "--top: expected an integer, got 'abc'" vit predict --model "$DATA/vit_cls" --pixels x --top abc
  expect_usage "--top: expected an integer, got '3.5'" vit predict --model "$DATA/vit_cls" --pixels x --top=3.5
  expect_usage "--top needs a value (K)" vit predict --model "$DATA/vit_cls" --pixels x --top
  expect_usage "--model needs a value (DIR)" vit predict --model --json
  expect_usage "--model given twice" vit predict --model a --model b --pixels x
  expect_usage "unknown option '-x'" inspect -x file
}

t_inspect_file() {
  local f="$DATA/vit_cls/model.safetensors"
  run inspect "$f"
  expect_rc 0
  err_empty
  out_has "tensors     56"
  out_has "parameters  67,013 (F32 67,013)"
  out_has "metadata    format=pt"
  out_has "classifier.weight"
  grep -qE '^  vit\.embeddings\.patch_embeddings\.projection\.weight +F32 +\[48, 3, 8, 8\] +9,216$' "$TMP/out" ||
    fail "$last: no aligned row for the patch projection"
  # natural order: layer.2 before layer.10 is not testable with 3 layers; layer.0 < layer.1 < layer.2
  grep -n 'encoder.layer.[0-9].attention.attention.key.bias' "$TMP/out" | cut -d: -f2 | sort -c -n ||
    fail "$last: tensors out of order"
  run inspect --json "$f"
  expect_rc 0
  # The numbers Python's safetensors reports for this file: 56 tensors, 67,013 elements.
  json_check 'j["kind"] == "safetensors"' 'j["num_tensors"] == 56' 'j["num_parameters"] == 67013' \
    'j["data_bytes"] == 4 * 67013' 'j["metadata"] == {"format": "pt"}' 'j["parameters_by_dtype"] == {"F32": 67013}' \
    'len(j["tensors"]) == 56' 'len(j["files"]) == 1 and j["files"][0]["bytes"] == 274044' \
    'j["files"][0]["header_bytes"] + 8 + 4 * 67013 == 274044' \
    '[t for t in j["tensors"] if t["name"] == "classifier.weight"] == [{"name": "classifier.weight", "dtype": "F32", "shape": [5, 48], "parameters": 240, "bytes": 960}]' \
    'sum(t["parameters"] for t in j["tensors"]) == 67013' 'all("file" not in t for t in j["tensors"])'
  # safetensors.torch.save_file's fixture: ten dtypes, 29 elements, two metadata keys.
  run inspect --json "$DATA/torch_save_file.safetensors"
  expect_rc 0
  json_check 'j["num_tensors"] == 10' 'j["num_parameters"] == 29' 'j["metadata"] == {"format": "pt", "note": "coeffnet fixture"}' \
    '{t["name"]: t["dtype"] for t in j["tensors"]}["bf16"] == "BF16"' \
    '{t["name"]: t["shape"] for t in j["tensors"]}["scalar"] == []' \
    '{t["name"]: t["shape"] for t in j["tensors"]}["empty"] == [0, 4]' \
    'j["parameters_by_dtype"] == {"BF16": 4, "BOOL": 3, "F16": 5, "F32": 7, "F64": 1, "I32": 2, "I64": 3, "U8": 4}'
  run inspect "$DATA/torch_save_file.safetensors"
  expect_rc 0
  out_has "metadata    format=pt, note=coeffnet fixture"
}

t_inspect_dir() {
  run inspect --json "$DATA/vit_cls"
  expect_rc 0
  json_check 'j["kind"] == "model_dir"' 'j["config_file"] == "config.json"' 'j["index_file"] is None' \
    'j["config"]["model_type"] == "vit"' 'j["config"]["architectures"] == ["ViTForImageClassification"]' \
    'j["config"]["hidden_size"] == 48 and j["config"]["num_hidden_layers"] == 3' \
    'j["config"]["num_attention_heads"] == 6 and j["config"]["image_size"] == 30 and j["config"]["patch_size"] == 8' \
    'j["config"]["num_labels"] == 5' 'j["num_tensors"] == 56' 'j["num_parameters"] == 67013' \
    '[f["file"] for f in j["files"]] == ["model.safetensors"]' 'j["metadata"] == {"format": "pt"}'
  run inspect "$DATA/vit_cls"
  expect_rc 0
  out_has "config      config.json: model_type vit, architectures ViTForImageClassification, hidden_size 48"
  out_has "weights     1 file"
  run inspect --json "$DATA/vit_base"
  expect_rc 0
  json_check 'j["num_tensors"] == 34' 'j["num_parameters"] == 26552' 'j["config"]["image_size"] == [24, 40]' \
    'j["config"]["qkv_bias"] is False' 'j["config"]["hidden_act"] == "gelu_new"'
  # A directory without config.json: every .safetensors file in it (an adapter, say).
  mkdir -p "$TMP/adapter"
  cp "$DATA/torch_save_file.safetensors" "$TMP/adapter/adapter_model.safetensors"
  echo '{"peft_type": "COEFF_TUNING", "method": "coeff", "r": 0}' >"$TMP/adapter/adapter_config.json"
  run inspect --json "$TMP/adapter"
  expect_rc 0
  json_check 'j["config_file"] == "adapter_config.json"' 'j["config"] == {"peft_type": "COEFF_TUNING", "method": "coeff", "r": 0}' \
    'j["num_tensors"] == 10'
}

t_inspect_sharded() {
  run inspect --json "$DATA/vit_cls_sharded"
  expect_rc 0
  # Per shard, as Python's safetensors counts them.
  json_check 'j["index_file"] == "model.safetensors.index.json"' 'len(j["files"]) == 7' \
    'j["num_tensors"] == 56' 'j["num_parameters"] == 67013' \
    '[f["num_tensors"] for f in j["files"]] == [5, 11, 9, 12, 4, 12, 3]' \
    '[f["num_parameters"] for f in j["files"]] == [9557, 9984, 9600, 9648, 9312, 9648, 9264]' \
    '[f["file"] for f in j["files"]] == ["model-%05d-of-00007.safetensors" % i for i in range(1, 8)]' \
    'all(t["file"].startswith("model-0") for t in j["tensors"])' 'j["metadata"] == {"format": "pt"}' \
    'j["config"]["num_labels"] == 5'
  run inspect "$DATA/vit_cls_sharded"
  expect_rc 0
  out_has "weights     7 files (index model.safetensors.index.json)"
  out_has "model-00007-of-00007.safetensors"
}

t_inspect_errors() {
  printf 'abc' >"$TMP/short.safetensors"
  expect_error "$TMP/short.safetensors: the file is 3 bytes, too short" inspect "$TMP/short.safetensors"
  printf '\x10\x00\x00\x00\x00\x00\x00\x00{not json here!}' >"$TMP/bad.safetensors"
  expect_error "$TMP/bad.safetensors: header is not valid JSON" inspect --json "$TMP/bad.safetensors"
  head -c 10000 "$DATA/vit_cls/model.safetensors" >"$TMP/cut.safetensors"
  expect_error "the file is truncated" inspect "$TMP/cut.safetensors"
  err_has "coeffnet: error: $TMP/cut.safetensors: "
  head -c 100000 /dev/urandom >"$TMP/random.bin"
  run inspect "$TMP/random.bin"
  expect_rc 1
  err_has "coeffnet: error: $TMP/random.bin: "
  expect_error "$TMP/nothing: no such file or directory" inspect "$TMP/nothing"
  mkdir -p "$TMP/empty"
  expect_error "$TMP/empty: no safetensors files" inspect "$TMP/empty"
  mkdir -p "$TMP/broken"
  cp "$DATA/vit_cls/config.json" "$TMP/broken/"
  cp "$TMP/short.safetensors" "$TMP/broken/model.safetensors"
  expect_error "$TMP/broken/model.safetensors: the file is 3 bytes" inspect "$TMP/broken"
  echo '{"weight_map": {"x": "../evil.safetensors"}}' >"$TMP/broken/model.safetensors.index.json"
  rm "$TMP/broken/model.safetensors"
  expect_error "must be a plain file name" inspect "$TMP/broken"
  printf '{oops' >"$TMP/broken/config.json"
  expect_error "config.json: not valid JSON" inspect "$TMP/broken"
}

# The reference logits (transformers) and ours, item by item, within 1e-4.
t_predict_pixels() {
  local ref="$DATA/vit_cls_reference.safetensors"
  for model in vit_cls vit_cls_sharded; do
    run vit predict --model "$DATA/$model" --pixels "$ref" --json
    expect_rc 0
    err_empty
    json_check 'len(j["predictions"]) == 2' 'all(len(p["top"]) == 5 for p in j["predictions"])' \
      'all(set(p) == {"top"} for p in j["predictions"])' \
      'all(set(e) == {"index", "label", "logit", "prob"} for p in j["predictions"] for e in p["top"])' \
      'max(abs(e["logit"] - st.read(D + "/vit_cls_reference.safetensors")["logits"][2][5 * i + e["index"]]) for i, p in enumerate(j["predictions"]) for e in p["top"]) < 1e-4' \
      'all([e["logit"] for e in p["top"]] == sorted([e["logit"] for e in p["top"]], reverse=True) for p in j["predictions"])' \
      'all(abs(sum(e["prob"] for e in p["top"]) - 1) < 1e-9 for p in j["predictions"])' \
      'all(e["label"] == ["circle", "square", "triangle", "star", "cross"][e["index"]] for p in j["predictions"] for e in p["top"])' \
      'j["inputs"] == [D + "/vit_cls_reference.safetensors:pixel_values[0]", D + "/vit_cls_reference.safetensors:pixel_values[1]"]'
  done
  run vit predict --model "$DATA/vit_cls" --pixels "$ref" --top 2
  expect_rc 0
  out_has "model  $DATA/vit_cls: ViTForImageClassification, 5 labels, input 3 x 30 x 30"
  out_has "$ref:pixel_values[1]"
  [ "$(grep -cE '^  +[12]  ' "$TMP/out")" -eq 4 ] || fail "$last: expected two ranked rows per item"
  # A checkpoint with a tensor the model does not use: a note on stderr, the same logits.
  cp -r "$DATA/vit_cls_sharded" "$TMP/extra"
  PYTHONPATH="$TMP" python3 -c '
import json, st, sys
st.write(sys.argv[1] + "/extra.safetensors", {"vit.pooler.dense.bias": ([48], [0.0] * 48)}, {"format": "pt"})
idx = json.load(open(sys.argv[1] + "/model.safetensors.index.json"))
idx["weight_map"]["vit.pooler.dense.bias"] = "extra.safetensors"
json.dump(idx, open(sys.argv[1] + "/model.safetensors.index.json", "w"))
' "$TMP/extra" || fail "cannot write the extra shard"
  run vit predict --model "$TMP/extra" --pixels "$ref" --json
  expect_rc 0
  err_has "coeffnet: note: 1 tensor of $TMP/extra unused by ViTForImageClassification, e.g. 'vit.pooler.dense.bias'"
  json_check 'max(abs(e["logit"] - st.read(D + "/vit_cls_reference.safetensors")["logits"][2][5 * i + e["index"]]) for i, p in enumerate(j["predictions"]) for e in p["top"]) < 1e-4'
  # An adapter of Coeff-Tuning alphas: the reference's coefficient-attention logits.
  mkdir -p "$TMP/alpha"
  echo '{"peft_type": "COEFF_TUNING", "method": "coeff"}' >"$TMP/alpha/adapter_config.json"
  PYTHONPATH="$TMP" python3 -c '
import st, sys
r = st.read(sys.argv[1])
st.write(sys.argv[2], {"vit.encoder.layer.%d.attention.attention.coeff_alpha" % l: (r["alpha.%d" % l][1], r["alpha.%d" % l][2]) for l in range(3)}, {"format": "pt"})
' "$ref" "$TMP/alpha/adapter_model.safetensors" || fail "cannot write the alpha adapter"
  run vit predict --model "$DATA/vit_cls" --pixels "$ref" --adapter "$TMP/alpha" --json
  expect_rc 0
  json_check 'j["adapter"].endswith("/alpha")' \
    'max(abs(e["logit"] - st.read(D + "/vit_cls_reference.safetensors")["logits_coeff"][2][5 * i + e["index"]]) for i, p in enumerate(j["predictions"]) for e in p["top"]) < 1e-4'
}

# Images: PNG exactly as transformers preprocesses it; JPEG through a different decoder.
t_predict_image() {
  local img="$DATA/images" ref="$DATA/images/shape_pixels.safetensors"
  run vit predict --model "$DATA/vit_cls" --image "$img/shape.png" --json
  expect_rc 0
  err_empty
  json_check 'len(j["predictions"]) == 1 and len(j["predictions"][0]["top"]) == 5' \
    'max(abs(e["logit"] - st.read(D + "/images/shape_pixels.safetensors")["logits"][2][e["index"]]) for e in j["predictions"][0]["top"]) < 1e-4' \
    'j["predictions"][0]["top"][0]["label"] == "star"' 'j["inputs"] == [D + "/images/shape.png"]'
  run vit predict --model "$DATA/vit_cls" --image "$img/shape.jpg" --image "$img/shape.png" --json
  expect_rc 0
  json_check 'len(j["predictions"]) == 2' \
    'max(abs(e["logit"] - st.read(D + "/images/shape_pixels.safetensors")["logits_jpeg"][2][e["index"]]) for e in j["predictions"][0]["top"]) < 5e-3' \
    'max(abs(e["logit"] - st.read(D + "/images/shape_pixels.safetensors")["logits"][2][e["index"]]) for e in j["predictions"][1]["top"]) < 1e-4'
  # No preprocessor_config.json: ViTImageProcessor's defaults at the model's size.
  run vit predict --model "$DATA/vit_cls_sharded" --image "$img/shape.png" --json
  expect_rc 0
  json_check 'max(abs(e["logit"] - st.read(D + "/images/shape_pixels.safetensors")["logits_default"][2][e["index"]]) for e in j["predictions"][0]["top"]) < 1e-4'
  for f in shape_gray.png shape_rgba.png shape_palette.png; do
    run vit predict --model "$DATA/vit_cls" --image "$img/$f" --top 1
    expect_rc 0
    out_has "$img/$f"
  done
  run vit predict --model "$DATA/vit_cls" --image "$img/shape.png"
  expect_rc 0
  grep -qE '^     1  star +0\.141[0-9]{2}  0\.2[0-9]{3}$' "$TMP/out" || fail "$last: no top-1 row for star: $(cat "$TMP/out")"
}

t_predict_top_clamp() {
  local ref="$DATA/vit_cls_reference.safetensors"
  run vit predict --model "$DATA/vit_cls" --pixels "$ref" --top 1000 --json
  expect_rc 0
  json_check 'all(len(p["top"]) == 5 for p in j["predictions"])' \
    'sorted(e["index"] for e in j["predictions"][0]["top"]) == [0, 1, 2, 3, 4]'
  cp "$TMP/out" "$TMP/all.json"
  run vit predict --model "$DATA/vit_cls" --pixels "$ref" --top 2 --json
  expect_rc 0
  json_check 'all(len(p["top"]) == 2 for p in j["predictions"])' \
    "[p['top'] for p in j['predictions']] == [p['top'][:2] for p in __import__('json').load(open('$TMP/all.json'))['predictions']]"
}

t_predict_errors() {
  local ref="$DATA/vit_cls_reference.safetensors" img="$DATA/images"
  expect_error "$TMP/none: not a directory" vit predict --model "$TMP/none" --pixels "$ref"
  printf 'GIF89a not really' >"$TMP/fake.png"
  expect_error "$TMP/fake.png: not a PNG or JPEG image" vit predict --model "$DATA/vit_cls" --image "$TMP/fake.png"
  head -c 900 "$img/shape.png" >"$TMP/cut.png"
  expect_error "$TMP/cut.png: the PNG data is truncated" vit predict --model "$DATA/vit_cls" --image "$TMP/cut.png"
  head -c 700 "$img/shape.jpg" >"$TMP/cut.jpg"
  expect_error "$TMP/cut.jpg: the JPEG data is truncated" vit predict --model "$DATA/vit_cls" --image "$TMP/cut.jpg"
  expect_error "$img: not a regular file" vit predict --model "$DATA/vit_cls" --image "$img"
  expect_error "$TMP/missing.png: no such file" vit predict --model "$DATA/vit_cls" --image "$TMP/missing.png"
  expect_error "no tensor named 'pixel_values'" vit predict --model "$DATA/vit_cls" --pixels "$DATA/torch_save_file.safetensors"
  expect_error "do not match the model's [batch, 3, 30, 30]" vit predict --model "$DATA/vit_cls" --pixels "$DATA/vit_base_reference.safetensors"
  expect_error "$TMP/nowhere: no adapter_config.json" vit predict --model "$DATA/vit_cls" --pixels "$ref" --adapter "$TMP/nowhere"
  mkdir -p "$TMP/bart"
  echo '{"model_type": "bart"}' >"$TMP/bart/config.json"
  cp "$DATA/vit_cls/model.safetensors" "$TMP/bart/"
  expect_error "model_type is 'bart', expected 'vit'" vit predict --model "$TMP/bart" --pixels "$ref"
  # A preprocessor that resizes to another size than the model takes.
  mkdir -p "$TMP/resize"
  cp "$DATA/vit_cls/config.json" "$DATA/vit_cls/model.safetensors" "$TMP/resize/"
  echo '{"size": {"height": 32, "width": 32}}' >"$TMP/resize/preprocessor_config.json"
  expect_error "makes a 45 x 37 image 32 x 32, but the model takes 30 x 30" vit predict --model "$TMP/resize" --image "$img/shape.png"
  echo '{"image_mean": [0.5, 0.5]}' >"$TMP/resize/preprocessor_config.json"
  expect_error "image_mean and image_std need 3 values" vit predict --model "$TMP/resize" --image "$img/shape.png"
  # An adapter naming a parameter the model lacks.
  mkdir -p "$TMP/wrong"
  echo '{"method": "coeff"}' >"$TMP/wrong/adapter_config.json"
  PYTHONPATH="$TMP" python3 -c 'import st, sys; st.write(sys.argv[1], {"no.such.weight": ([1], [0.0])})' \
    "$TMP/wrong/adapter_model.safetensors"
  expect_error "tensor 'no.such.weight' names no parameter of the model" vit predict --model "$DATA/vit_cls" --pixels "$ref" --adapter "$TMP/wrong"
}

# ---- tune -----------------------------------------------------------------------------------
# On the tiny fixture model (30 x 30 images): small runs that finish in seconds.
TUNE_SMALL=(--model "$DATA/vit_cls" --tasks count --train-per-class 6 --test-images 40 --epochs 2 --batch 8)

# `vit filters` on the test ViT (3 layers, 6 heads, 30 x 30 input, a 3 x 3 patch grid).
t_filters() {
  local img="$DATA/images/shape.png"
  run vit filters --model "$DATA/vit_cls" --image "$img" --out "$TMP/f.png" --dump "$TMP/maps.safetensors" --json
  expect_rc 0
  # The PNG is a PNG, its size as documented; the dump holds every layer's maps; the JSON's numbers
  # are the dump's query row (default: the last layer, the CLS token).
  PYTHONPATH="$TMP" python3 - "$TMP/f.png" "$TMP/maps.safetensors" "$TMP/out" <<'PY' || fail "$last: PNG, dump or JSON disagree"
import json, struct, sys, st
png = open(sys.argv[1], "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", png[16:24])
assert w > 100 and h > 100, (w, h)
maps = st.read(sys.argv[2])
for l in range(3):
    for k in ("maps", "mixed_maps"):
        dtype, shape, _ = maps[f"layer.{l}.{k}"]
        assert dtype == "F32" and shape == [1, 6, 10, 10], (l, k, shape)
    assert maps[f"layer.{l}.maps"][2] == maps[f"layer.{l}.mixed_maps"][2], "plain attention: mixed = maps"
j = json.load(open(sys.argv[3]))
assert j["layer"] == 2 and j["layers"] == 3 and j["query"] == 0 and j["heads"] == 6 and j["tokens"] == 10, j
assert j["grid"] == [3, 3] and j["alpha_prime"] is None and j["Fhat"] is None, j
P = maps["layer.2.maps"][2]
for h in range(6):
    row = P[(h * 10 + 0) * 10:(h * 10 + 0) * 10 + 10]
    assert abs(sum(row) - 1) < 1e-5
    assert all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(j["F"][h], row)), h
PY
  # --query-xy: the point (30, 12) of the 45 x 37 image lands at (20, 9.7) of the 30 x 30 input:
  # row 1, column 2 of the 3 x 3 patches of 8 pixels, token 1 + 1 * 3 + 2 = 6 (row and column
  # swapped would give 8). (40, 30) lands past the patches.
  run vit filters --model "$DATA/vit_cls" --image "$img" --query-xy 30,12 --layer 0 --out "$TMP/f2.png" --json
  expect_rc 0
  python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); assert j["query"] == 6 and j["query_patch"] == [1, 2] and j["layer"] == 0, j' "$TMP/out" ||
    fail "$last: --query-xy 30,12 should pick token 6, patch (1, 2)"
  expect_error "outside its 3 x 3 patches of 8 x 8 pixels (they cover 24 x 24)" \
    vit filters --model "$DATA/vit_cls" --image "$img" --query-xy 40,30 --out "$TMP/f2.png"
  # An adapter with alpha: the mixed filters are alpha' F, alpha' = I + alpha (read back from the dump).
  mkdir -p "$TMP/alpha"
  echo '{"method": "coeff"}' >"$TMP/alpha/adapter_config.json"
  PYTHONPATH="$TMP" python3 -c '
import st, sys, random
random.seed(3)
st.write(sys.argv[1], {f"vit.encoder.layer.{l}.attention.attention.coeff_alpha": ([6, 6], [random.uniform(-0.6, 0.6) for _ in range(36)]) for l in range(3)})' \
    "$TMP/alpha/adapter_model.safetensors"
  run vit filters --model "$DATA/vit_cls" --image "$img" --adapter "$TMP/alpha" --query 4 --out "$TMP/f3.png" --dump "$TMP/m3.safetensors" --json
  expect_rc 0
  PYTHONPATH="$TMP" python3 - "$TMP/alpha/adapter_model.safetensors" "$TMP/m3.safetensors" "$TMP/out" <<'PY' || fail "$last: alpha', Fhat or the dump disagree"
import json, sys, st
alpha = st.read(sys.argv[1])["vit.encoder.layer.2.attention.attention.coeff_alpha"][2]
maps = st.read(sys.argv[2])
j = json.load(open(sys.argv[3]))
ap = [[(1.0 if h == i else 0.0) + alpha[h * 6 + i] for i in range(6)] for h in range(6)]
assert all(abs(j["alpha_prime"][h][i] - ap[h][i]) < 1e-5 for h in range(6) for i in range(6)), "alpha' is not I + alpha"
P, M = maps["layer.2.maps"][2], maps["layer.2.mixed_maps"][2]
q = 4
for h in range(6):
    for t in range(10):
        want = sum(ap[h][i] * P[(i * 10 + q) * 10 + t] for i in range(6))
        assert abs(M[(h * 10 + q) * 10 + t] - want) < 1e-5, (h, t)
        assert abs(j["Fhat"][h][t] - want) < 1e-5, (h, t)
assert min(min(r) for r in j["Fhat"]) < 0, "a negative alpha' entry should give a negative mixed weight"
PY
}

t_filters_errors() {
  local img="$DATA/images/shape.png" m="$DATA/vit_cls"
  expect_error "--layer 3 is out of range" vit filters --model "$m" --image "$img" --layer 3 --out "$TMP/fe.png"
  expect_error "--query 10 is out of range" vit filters --model "$m" --image "$img" --query 10 --out "$TMP/fe.png"
  expect_error "outside the image (45 x 37 pixels" vit filters --model "$m" --image "$img" --query-xy 45,3 --out "$TMP/fe.png"
  expect_usage "expected X,Y" vit filters --model "$m" --image "$img" --query-xy 4 --out "$TMP/fe.png"
  expect_usage "--query" vit filters --model "$m" --image "$img" --query 1 --query-xy 4,4 --out "$TMP/fe.png"
  printf 'GIF89a not really' >"$TMP/fake.png"
  expect_error "$TMP/fake.png: not a PNG or JPEG image" vit filters --model "$m" --image "$TMP/fake.png" --out "$TMP/fe.png"
  # An adapter made for another model: alpha for 4 heads where the model has 6.
  mkdir -p "$TMP/other"
  echo '{"method": "coeff"}' >"$TMP/other/adapter_config.json"
  PYTHONPATH="$TMP" python3 -c 'import st, sys; st.write(sys.argv[1], {"vit.encoder.layer.0.attention.attention.coeff_alpha": ([4, 4], [0.0] * 16)})' \
    "$TMP/other/adapter_model.safetensors"
  expect_error "[4, 4]" vit filters --model "$m" --image "$img" --adapter "$TMP/other" --out "$TMP/fe.png"
  [ ! -e "$TMP/fe.png" ] || fail "a failed run left $TMP/f.png behind"
}

# The page of `vit filters --html` in a real browser: headless Chromium (Debian's chromium; CI
# installs it) loads it, driven by its #drive= fragment (tools/filters_render.hpp: real click and
# input events through the page's own handlers), and prints the DOM; the numbers the page shows are
# compared with --json's. Skipped (exit 77) without chromium.
t_filters_html() {
  local img="$DATA/images/shape.png" m="$DATA/vit_cls" chrome
  chrome=$(command -v chromium || command -v chromium-browser) ||
    { skip "chromium (or chromium-browser) is not installed; apt-get install chromium"; return; }
  # An adapter whose alpha' has every entry different: alpha[h][i] = 0.05 (h - i) + 0.01 (l + 1)
  # (written in float32), so a slider move changes one target head only.
  mkdir -p "$TMP/ad"
  echo '{"method": "coeff"}' >"$TMP/ad/adapter_config.json"
  PYTHONPATH="$TMP" python3 -c '
import st, sys
st.write(sys.argv[1], {f"vit.encoder.layer.{l}.attention.attention.coeff_alpha":
                       ([6, 6], [0.05 * (h - i) + 0.01 * (l + 1) for h in range(6) for i in range(6)]) for l in range(3)})' \
    "$TMP/ad/adapter_model.safetensors"
  local args=(vit filters --model "$m" --image "$img" --adapter "$TMP/ad" --out "$TMP/h.png")
  run "${args[@]}" --query 4 --html "$TMP/page.html" --json
  expect_rc 0
  cp "$TMP/out" "$TMP/q4.json"
  run "${args[@]}" --query 8 --json
  expect_rc 0
  cp "$TMP/out" "$TMP/q8.json"
  [ -s "$TMP/page.html" ] || { fail "$last: no page written"; return; }
  # dom NAME [FRAGMENT]: the DOM after the page (and its driving) ran, in $TMP/NAME.dom.
  dom() {
    last="chromium --dump-dom page.html${2-}"
    timeout 35 "$chrome" --headless=new --disable-gpu --no-sandbox --disable-dev-shm-usage --no-first-run \
      --user-data-dir="$TMP/chromium-profile" --virtual-time-budget=5000 --dump-dom "file://$TMP/page.html${2-}" \
      >"$TMP/$1.dom" 2>"$TMP/$1.chromium.err" ||
      fail "$last: chromium exited with $?: $(tail -c 600 "$TMP/$1.chromium.err")"
  }
  dom loaded
  dom click "#drive=click:8"
  dom slider "#drive=slider:0-1:-0.5"
  PYTHONPATH="$TMP" python3 - "$TMP" <<'PY' || fail "the page's numbers disagree with --json's (above)"
import json, sys
from html.parser import HTMLParser
tmp = sys.argv[1]

class Dom(HTMLParser):
    """The text of every element with an id (nested tags' text included), and <html>'s attributes."""
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.open, self.root = {}, [], {}
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.root = a
        if tag in ("br", "input", "img", "meta"):
            return
        self.open.append(a.get("id"))
        if a.get("id"):
            self.text[a["id"]] = ""
    def handle_endtag(self, tag):
        if tag not in ("br", "input", "img", "meta") and self.open:
            self.open.pop()
    def handle_data(self, data):
        for i in self.open:
            if i:
                self.text[i] += data

def load(name):
    d = Dom()
    d.feed(open(f"{tmp}/{name}.dom", encoding="utf-8").read())
    return d

def cells(d, prefix, H, T):
    return [[float(d.text[f"{prefix}-{h}-{t}"]) for t in range(T)] for h in range(H)]

bad = []
def check(ok, what):
    if not ok:
        bad.append(what)

r6 = lambda x: float("%.6g" % x)
j4, j8 = json.load(open(f"{tmp}/q4.json")), json.load(open(f"{tmp}/q8.json"))
H, T = j4["heads"], j4["tokens"]
assert (H, T, j4["query"], j8["query"]) == (6, 10, 4, 8), (H, T, j4["query"], j8["query"])

# (a) as loaded: query 4, the numbers are --json's.
a = load("loaded")
check(a.text.get("query") == "4 (patch 1, 0)", f"loaded: #query is {a.text.get('query')!r}")
check(cells(a, "f", H, T) == j4["F"], "loaded: the F cells differ from --json's F")
check(cells(a, "fhat", H, T) == j4["Fhat"], "loaded: the Fhat cells differ from --json's Fhat")
for h in range(H):
    for i in range(H):
        check(float(a.text[f"alpha-{h}-{i}-value"]) == j4["alpha_prime"][h][i], f"loaded: alpha-{h}-{i}-value")
check("data-driven" not in a.root, "loaded: the page drove itself without #drive=")

# (b) a click on patch 8 (row 2, column 1): the query and the numbers are --query 8's.
b = load("click")
check(b.root.get("data-driven") == "done", f"click: data-driven is {b.root.get('data-driven')!r}")
check(b.text.get("query") == "8 (patch 2, 1)", f"click: #query is {b.text.get('query')!r}")
check(cells(b, "f", H, T) == j8["F"], "click: the F cells differ from --query 8 --json's F")
check(cells(b, "fhat", H, T) == j8["Fhat"], "click: the Fhat cells differ from --query 8 --json's Fhat")
check(j8["F"] != j4["F"], "click: queries 4 and 8 have the same F (the test shows nothing)")

# (c) alpha'[0][1] moved to -0.5: F stays, Fhat_0 is recomputed from --json's F with that entry
# changed (sum over i in order, in double, then 6 significant digits), the other heads stay.
c = load("slider")
check(c.root.get("data-driven") == "done", f"slider: data-driven is {c.root.get('data-driven')!r}")
check(c.text.get("query") == "4 (patch 1, 0)", f"slider: #query is {c.text.get('query')!r}")
check(float(c.text["alpha-0-1-value"]) == -0.5, f"slider: alpha-0-1-value is {c.text['alpha-0-1-value']!r}")
A = [row[:] for row in j4["alpha_prime"]]
check(A[0][1] != -0.5, "slider: alpha'[0][1] was -0.5 already")
A[0][1] = -0.5
F = j4["F"]
want = [[r6(sum(A[h][i] * F[i][t] for i in range(H))) for t in range(T)] for h in range(H)]
got = cells(c, "fhat", H, T)
check(cells(c, "f", H, T) == F, "slider: the F cells changed")
check(got != j4["Fhat"], "slider: the Fhat cells did not change")
check(got[0] != j4["Fhat"][0], "slider: the Fhat_0 cells did not change")
check(got[1:] == j4["Fhat"][1:], "slider: Fhat_1..5 changed, alpha' changed in row 0 only")
check(got == want, f"slider: Fhat_0 is {got[0]}, sum_i alpha'[0][i] F_i is {want[0]}")
for w in bad:
    print("  " + w, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

t_tune_small() {
  run tune "${TUNE_SMALL[@]}" --methods linear_probe,coeff,lora --seeds 2 --out "$TMP/tune" --json
  expect_rc 0
  json_check 'j["kind"] == "methods"' 'len(j["runs"]) == 6' 'all(r["finished"] for r in j["runs"])' \
    '[r["variant"] for r in j["summary"]] == ["linear_probe", "coeff", "lora"]' \
    '[r["tuned_parameters"] for r in j["summary"]] == [0, 108, 2304]' \
    'all(r["trainable_parameters"] - r["head_parameters"] == {"linear_probe": 0, "coeff": 108, "lora": 2304}[r["variant"]] and r["head_parameters"] == 196 for r in j["runs"])' \
    'all(0 <= r["accuracy"] <= 1 for r in j["runs"])' 'j["tasks"][0]["train"] == 24 and j["tasks"][0]["test"] == 40' \
    'all(r["tasks"]["count"]["seeds"] == 2 for r in j["summary"])' \
    'all(len(r["val_accuracy_per_epoch"]) == 2 for r in j["runs"])'
  [ -s "$TMP/tune/results.json" ] || fail "no results.json"
  grep -q "<svg" "$TMP/tune/results.svg" 2>/dev/null || fail "no results.svg"
  # The saved adapter (seed 0) loads onto the base model with its own 4-class head.
  run vit predict --model "$DATA/vit_cls" --pixels "$DATA/vit_cls_reference.safetensors" --adapter "$TMP/tune/adapters/count/coeff" --json
  expect_rc 0
  json_check 'all(len(p["top"]) == 4 for p in j["predictions"])' \
    'all(e["label"] in ["1", "2", "3", "4"] for p in j["predictions"] for e in p["top"])'
  # The human-readable table.
  run tune "${TUNE_SMALL[@]}" --methods coeff --seeds 1 --out "$TMP/tune2"
  expect_rc 0
  out_has "Test accuracy (%)"
  out_has "coeff"
  # The tiny fixture model is random, so the runs above cannot show that tuning learns. The
  # shipped model (pretrained on shapes) can learn to count: the README's table has LoRA at 64 %
  # after 15 epochs of 100 images per class. A short LoRA run must beat chance (4 classes: 25 %)
  # by at least 15 points on 400 test images (one accuracy's standard error there is at most 2.5
  # points).
  run tune --model "$MODELS/vit-shapes" --tasks count --methods lora --seeds 1 --train-per-class 100 --epochs 6 \
    --test-images 400 --out "$TMP/tune3" --json
  expect_rc 0
  json_check 'len(j["runs"]) == 1 and j["runs"][0]["finished"]' \
    'j["runs"][0]["accuracy"] >= 0.25 + 0.15 or print("  accuracy:", j["runs"][0]["accuracy"])'
}

t_tune_resume() {
  # Stopped after 3 steps with a checkpoint, then resumed: the same as one straight run.
  local args=("${TUNE_SMALL[@]}" --methods coeff_lora --alpha-dropout 0.3 --seeds 1)
  run tune "${args[@]}" --out "$TMP/straight" --json
  expect_rc 0
  run tune "${args[@]}" --out "$TMP/resumed" --stop-after 3 --json
  expect_rc 0
  json_check 'not j["runs"][0]["finished"]' 'j["runs"][0]["steps"] == 3'
  [ -s "$TMP/resumed/checkpoints/count.coeff_lora.seed0.safetensors" ] || fail "no checkpoint written"
  run tune "${args[@]}" --out "$TMP/resumed" --resume --json
  expect_rc 0
  python3 -c '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
ra, rb = a["runs"][0], b["runs"][0]
assert rb["finished"] and ra["accuracy"] == rb["accuracy"] and ra["final_loss"] == rb["final_loss"], (ra, rb)
' "$TMP/straight/results.json" "$TMP/resumed/results.json" || fail "the resumed run differs from the straight one"
  cmp -s "$TMP/straight/adapters/count/coeff_lora/adapter_model.safetensors" \
    "$TMP/resumed/adapters/count/coeff_lora/adapter_model.safetensors" || fail "the resumed adapter differs"
}

t_tune_ablation() {
  run tune "${TUNE_SMALL[@]}" --ablation --seeds 1 --out "$TMP/abl" --json
  expect_rc 0
  json_check 'j["kind"] == "ablation"' \
    '[r["variant"] for r in j["summary"]] == ["init=residual_zero", "init=identity", "init=random", "dropout=0.0", "dropout=0.1", "dropout=0.2", "dropout=0.4"]' \
    'all(r["config"]["alpha"]["weight_decay"] == 0.05 for r in j["runs"][:3])'
}

t_tune_errors() {
  expect_error "unknown method 'prompt'" tune "${TUNE_SMALL[@]}" --methods prompt --out "$TMP/e1"
  # cuda and emu: refused with the reason (this machine: no usable GPU; a CPU-only build: no CUDA
  # backend; emu: no backend table yet); a device that is none of cpu, cuda, cuda:N, emu: named.
  expect_error "tune --device cuda" tune --device cuda --out "$TMP/e2"
  expect_error "tune --device cuda" tune --device cuda:1 --out "$TMP/e2"
  expect_error "tune --device emu: the emulated device runs the CUDA kernels in tests" tune --device emu --out "$TMP/e2"
  expect_error "device 'tpu': unknown device (expected cpu, cuda, cuda:N with N a GPU number, or emu)" \
    tune --device tpu --out "$TMP/e2"
  expect_error "device 'cuda:x': the GPU number must be a whole number from 0 to 1023" tune --device cuda:x --out "$TMP/e2"
  expect_error "no such file or folder" tune --model "$DATA/vit_cls" --data "$TMP/nowhere" --out "$TMP/e3"
  expect_error "unknown task" tune --model "$DATA/vit_cls" --tasks counting --out "$TMP/e4"
  expect_error "pretraining task" tune --model "$DATA/vit_cls" --tasks shapes --out "$TMP/e5"
  mkdir -p "$TMP/folder/a" "$TMP/folder/b"
  cp "$DATA/images/shape.png" "$TMP/folder/a/ok.png"
  expect_error "class 'b' has no PNG or JPEG images" tune --model "$DATA/vit_cls" --data "$TMP/folder" --out "$TMP/e6"
  head -c 100 "$DATA/images/shape.png" >"$TMP/folder/b/truncated.png"
  expect_error "truncated.png" tune --model "$DATA/vit_cls" --data "$TMP/folder" --out "$TMP/e7"
  expect_usage "--seeds" tune --seeds 0
}

# ---- main -----------------------------------------------------------------------------------

all=(help usage_errors inspect_file inspect_dir inspect_sharded inspect_errors predict_pixels predict_image
  predict_top_clamp predict_errors filters filters_errors filters_html tune_small tune_resume tune_ablation tune_errors)
[ -x "$BIN" ] || { echo "$0: $BIN is not an executable" >&2; exit 2; }
command -v python3 >/dev/null || { echo "$0: python3 is needed for the JSON checks" >&2; exit 2; }
[ $# -gt 0 ] && all=("$@")
for scenario in "${all[@]}"; do
  declare -F "t_$scenario" >/dev/null || { echo "$0: no scenario '$scenario'" >&2; exit 2; }
  before=$failures
  skipped_before=$skipped
  "t_$scenario"
  if [ "$failures" -ne "$before" ]; then
    echo "FAIL $scenario ($((failures - before)) checks)"
  elif [ "$skipped" -ne "$skipped_before" ]; then
    echo "skip $scenario"
  else
    echo "ok   $scenario"
  fi
done
[ "$failures" -eq 0 ] || exit 1
[ "$skipped" -eq 0 ] || exit 77
