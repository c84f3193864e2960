#!/usr/bin/env bash
# docs/make_figures.sh: regenerates every picture docs/graph-filter-view.md shows, from the
# programs it describes (run after the README's Quick start, which builds them).
#   bash docs/make_figures.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=docs/images
mkdir -p "$out"
# The image, each head's filter and the mixed filters for the CLS token of the last layer.
"$build"/examples/filter_subspace --out "$out" --image 2 --query 0
# The star's patch as the query, with the page to explore it (kept out of git: build/).
"$build"/tools/coeffnet vit filters --model models/vit-shapes --adapter models/vit-shapes-count-alpha \
  --image "$out"/filter_subspace_image.png --query-xy 20,12 --out "$out"/filters_star_patch.png \
  --html "$build"/filters_star_patch.html
echo "docs/make_figures.sh: wrote $out/filter_subspace_{image,plain,alpha}.png, $out/filters_star_patch.png and $build/filters_star_patch.html"
