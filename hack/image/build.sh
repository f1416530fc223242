#!/usr/bin/env bash
# make image: build the flox-isa image here with buildah, no Docker engine and no
# network inside the build.
#
#   1. base image: a Debian root filesystem made by mmdebstrap (Debian's Python 3.11
#      from packages), unless PYTHON_IMAGE names one (e.g. python:3.11-slim-bookworm
#      where a registry is reachable);
#   2. wheels, on the host: the package's own wheel, and `pip download --only-binary`
#      of its runtime dependencies at the pins of constraints.txt, for CPython 3.11
#      on manylinux x86_64; passed as --build-context wheels=DIR in place of the
#      Dockerfile's `wheels` stage and installed there with --no-index;
#   3. buildah bud --isolation chroot --network none, vfs storage driver;
#   4. a report (sizes of the image, its layers and the base, labels, user) and a
#      package manifest (pip inspect + dpkg-query -W, checked against constraints.txt)
#      in build/image/.
#
# Cached under ${FLOX_ISA_CACHE:-~/.cache/flox-isa}/image/, each keyed by its inputs:
# base/<suite>-<sha of the package list and options>.tar, wheels/<sha of
# constraints.txt, pyproject.toml and the target>/, project/<sha of the sources>/,
# and the container storage (containers/: buildah's layer cache).
#
# Environment: PYTHON_IMAGE (skip the Debian base), PYTHON (the host Python whose pip
# downloads; default .venv/bin/python), FLOX_ISA_CACHE, IMAGE (default
# localhost/flox-isa:<version>).
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) echo "hack/image/build.sh: unknown argument '$1' (it takes none; see --help)" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CACHE=${FLOX_ISA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flox-isa}/image
OUT=$ROOT/build/image
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n1)
IMAGE=${IMAGE:-localhost/flox-isa:$VERSION}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3

# The base's Debian release, its packages, and the target the wheels are for: Debian
# 12's Python is 3.11 and its glibc 2.36 (the same as python:3.11-slim-bookworm's).
SUITE=bookworm
PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
GLIBC_MINOR=36
MMDEBSTRAP_OPTS=(
  --variant=minbase --include="$PACKAGES" --skip=output/dev
  # merged /usr without the usrmerge package (which pulls in perl)
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  # as Debian's -slim images: no manuals, docs (but copyrights) or translations
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*'
)
PIP_TARGET=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none)
for ((minor = GLIBC_MINOR; minor >= 17; minor--)); do
  PIP_TARGET+=(--platform "manylinux_2_${minor}_x86_64")
done
PIP_TARGET+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)

# One container storage for this script and for the tests that run the image (they
# read it from build/image/image.json): vfs, since overlay needs what this sandbox lacks.
STORAGE=(--root "$CACHE/containers/storage" --runroot "$CACHE/containers/run" --storage-driver vfs)

say() { printf '==> %s\n' "$*"; }
die() { printf 'hack/image/build.sh: %s\n' "$*" >&2; exit 1; }
sha() { sha256sum | cut -c1-16; }
elapsed() { printf '%ds' "$((SECONDS - $1))"; }

for tool in buildah podman mmdebstrap; do
  command -v "$tool" >/dev/null \
    || die "$tool not found: apt-get install -y buildah podman mmdebstrap crun (Debian 12 packages)"
done
buildah_version=$(buildah --version | awk '{print $3}')
[[ $(printf '%s\n1.28\n' "$buildah_version" | sort -V | head -n1) == 1.28 ]] \
  || die "buildah $buildah_version is too old: --build-context needs buildah >= 1.28"
[[ $(uname -m) == x86_64 ]] || die "builds amd64 images only (this machine is $(uname -m))"
mkdir -p "$CACHE"/{base,wheels,project,containers} "$OUT"
start=$SECONDS

# 1. The base image.
if [[ -n ${PYTHON_IMAGE:-} ]]; then
  base_ref=$PYTHON_IMAGE
  say "[1/5] base image: $base_ref (PYTHON_IMAGE)"
else
  base_key=$(printf '%s\n' "$SUITE" "$PACKAGES" "${MMDEBSTRAP_OPTS[@]}" | sha)
  base_tar=$CACHE/base/$SUITE-$base_key.tar
  base_ref=localhost/flox-isa-base:$SUITE-$base_key
  if [[ -f $base_tar ]]; then
    say "[1/5] base root filesystem: cached $base_tar"
  else
    say "[1/5] base root filesystem: mmdebstrap $SUITE ($PACKAGES) -> $base_tar"
    t=$SECONDS
    rm -rf "$base_tar.partial"
    mmdebstrap --format=tar "${MMDEBSTRAP_OPTS[@]}" "$SUITE" "$base_tar.partial" \
      >"$OUT/mmdebstrap.log" 2>&1 \
      || { tail -n 30 "$OUT/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $OUT/mmdebstrap.log)"; }
    mv "$base_tar.partial" "$base_tar"
    say "      made in $(elapsed "$t")"
  fi
  if ! buildah "${STORAGE[@]}" inspect --type image "$base_ref" >/dev/null 2>&1; then
    say "      importing it as $base_ref"
    podman "${STORAGE[@]}" import --quiet --change 'CMD ["python3"]' \
      --message "mmdebstrap $SUITE: $PACKAGES" "$base_tar" "$base_ref" >/dev/null
  fi
fi

# 2. The wheels, downloaded on the host.
say "[2/5] wheels for CPython 3.11, manylinux_2_$GLIBC_MINOR x86_64 and older"
src_key=$(tar -c --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  --exclude=__pycache__ --exclude='*.pyc' pyproject.toml README.md flox_isa | sha)
project=$CACHE/project/$src_key
if [[ ! -f $project/.complete ]]; then
  t=$SECONDS
  rm -rf "$project" && mkdir -p "$project"
  tree=$(mktemp -d) && trap 'rm -rf "$tree"' EXIT
  # Exactly the files .dockerignore lets into a build.
  tar -c --exclude=__pycache__ --exclude='*.pyc' pyproject.toml README.md flox_isa \
    | tar -x -C "$tree"
  "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$project" "$tree" \
    >"$OUT/wheel.log" 2>&1 \
    || { tail -n 30 "$OUT/wheel.log" >&2; die "pip wheel failed (log: $OUT/wheel.log)"; }
  touch "$project/.complete"
  say "      the package's wheel built in $(elapsed "$t")"
fi
wheel=$(ls "$project"/flox_isa-*.whl)
deps_key=$(cat constraints.txt pyproject.toml <(printf '%s\n' "${PIP_TARGET[@]}") | sha)
deps=$CACHE/wheels/$deps_key
if [[ ! -f $deps/.complete ]]; then
  t=$SECONDS
  rm -rf "$deps" && mkdir -p "$deps"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check "${PIP_TARGET[@]}" \
    --constraint constraints.txt --dest "$deps" "$wheel"
  rm -f "$deps"/flox_isa-*.whl
  touch "$deps/.complete"
  say "      runtime dependencies downloaded in $(elapsed "$t")"
fi
rm -rf "$OUT/wheels" && mkdir -p "$OUT/wheels"
cp -p "$deps"/*.whl "$wheel" "$OUT/wheels/"
say "      $(ls "$OUT/wheels" | wc -l) wheels in $OUT/wheels ($(du -sh "$OUT/wheels" | cut -f1))"

# 3. The image.
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(git log -1 --format=%cI 2>/dev/null || echo unknown)
if [[ $revision != unknown ]] && [[ -n $(git status --porcelain -- Dockerfile .dockerignore \
  pyproject.toml README.md constraints.txt flox_isa 2>/dev/null) ]]; then
  revision=$revision-dirty
fi
# Chroot isolation shares the host's network (buildah refuses --network none with it),
# so the whole of buildah runs in a new, empty network namespace: nothing in the build
# can reach anything. A registry base is therefore pulled before.
if [[ -n ${PYTHON_IMAGE:-} ]]; then
  buildah "${STORAGE[@]}" pull --quiet "$base_ref" >/dev/null
fi
inputs=$( (cat Dockerfile .dockerignore constraints.txt; sha256sum "$OUT"/wheels/*.whl | cut -c1-64
  buildah "${STORAGE[@]}" inspect --type image --format '{{.FromImageID}}' "$base_ref"
  printf '%s\n' "$VERSION" "$revision" "$created") | sha)
if buildah "${STORAGE[@]}" inspect --type image "localhost/flox-isa-inputs:$inputs" >/dev/null 2>&1
then
  say "[3/5] image: cached (the same Dockerfile, wheels, base and labels: localhost/flox-isa-inputs:$inputs)"
  buildah "${STORAGE[@]}" tag "localhost/flox-isa-inputs:$inputs" "$IMAGE"
  build_seconds=0
else
  say "[3/5] buildah bud --isolation chroot (vfs) in an empty network namespace -> $IMAGE"
  t=$SECONDS
  # No --layers: with vfs every cached step is a full copy of the root filesystem, which
  # costs more than it saves; the whole image is cached by its inputs instead (above).
  unshare --net buildah "${STORAGE[@]}" bud --quiet --isolation chroot --pull=never \
    --build-context "wheels=$OUT/wheels" \
    --build-arg "PYTHON_IMAGE=$base_ref" \
    --build-arg "VERSION=$VERSION" --build-arg "REVISION=$revision" \
    --build-arg "CREATED=$created" \
    --tag "$IMAGE" --tag "localhost/flox-isa-inputs:$inputs" --file Dockerfile . \
    >"$OUT/build.log" 2>&1 \
    || { tail -n 40 "$OUT/build.log" >&2; die "buildah bud failed (whole log: $OUT/build.log)"; }
  build_seconds=$((SECONDS - t))
  # Only the newest image is kept: with vfs each costs its full size on disk.
  for old in $(buildah "${STORAGE[@]}" images --format '{{.Name}}:{{.Tag}}' \
    | grep '^localhost/flox-isa-inputs:' | grep -v ":$inputs\$"); do
    buildah "${STORAGE[@]}" rmi "$old" >/dev/null 2>&1 || true
  done
  buildah "${STORAGE[@]}" rmi --prune >/dev/null 2>&1 || true
fi
image_id=$(buildah "${STORAGE[@]}" inspect --type image --format '{{.FromImageID}}' "$IMAGE")
say "      built in ${build_seconds}s: $image_id"

# 4. The report.
say "[4/5] the image"
mb() { awk '{printf "%.1f MB", $1 / 1e6}'; }
size=$(podman "${STORAGE[@]}" image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(podman "${STORAGE[@]}" image inspect --format '{{.Size}}' "$base_ref")
printf '  size   %s (base %s: %s; flox-isa adds %s)\n' "$(mb <<<"$size")" "$base_ref" \
  "$(mb <<<"$base_size")" "$(mb <<<"$((size - base_size))")"
echo "  layers (newest first):"
podman "${STORAGE[@]}" history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" \
  | cut -c1-110 | sed 's/^/    /'
echo "  labels:"
podman "${STORAGE[@]}" image inspect --format \
  '{{range $k, $v := .Labels}}    {{$k}}={{$v}}{{"\n"}}{{end}}' "$IMAGE" | sed '/^$/d'
user=$(podman "${STORAGE[@]}" image inspect --format '{{.Config.User}}' "$IMAGE")
echo "  user   $user"

# 5. The package manifest, next to the image's description.
if [[ -f $OUT/packages.json && $(cat "$OUT/packages.id" 2>/dev/null) == "$image_id" ]]; then
  say "[5/5] package manifest: $OUT/packages.json (made for this image)"
else
  say "[5/5] package manifest"
  rm -f "$OUT/packages.id"
  ctr=$(buildah "${STORAGE[@]}" from --pull=never --quiet "$IMAGE")
  trap 'buildah "${STORAGE[@]}" rm "$ctr" >/dev/null 2>&1 || true; rm -rf "${tree:-}"' EXIT
  unshare --net buildah "${STORAGE[@]}" run --isolation chroot --user 0:0 "$ctr" -- \
    /opt/flox-isa/bin/python -m pip --disable-pip-version-check --no-cache-dir inspect --local \
    >"$OUT/pip-inspect.json"
  unshare --net buildah "${STORAGE[@]}" run --isolation chroot --user 0:0 "$ctr" -- \
    dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' >"$OUT/dpkg.txt"
  "$PYTHON" hack/image/manifest.py --pip-inspect "$OUT/pip-inspect.json" \
    --dpkg "$OUT/dpkg.txt" --constraints constraints.txt --image "$IMAGE" \
    --output "$OUT/packages.json"
  echo "$image_id" >"$OUT/packages.id"
  buildah "${STORAGE[@]}" rm "$ctr" >/dev/null
fi

# What the tests read: the image, and the storage it is in.
"$PYTHON" - "$OUT/image.json" "$IMAGE" "$image_id" "$VERSION" "$base_ref" "$size" "$base_size" \
  "$user" "$build_seconds" "${STORAGE[@]}" <<'PY'
import json, sys
out, image, id_, version, base, size, base_size, user, seconds, *storage = sys.argv[1:]
description = {
    "image": image, "id": id_, "version": version, "base": base, "size_bytes": int(size),
    "base_size_bytes": int(base_size), "user": user, "build_seconds": int(seconds),
    "storage": storage,
}
with open(out, "w") as f:
    json.dump(description, f, indent=2)
    f.write("\n")
PY
say "done in $(elapsed "$start"): $IMAGE ($OUT/image.json, $OUT/packages.json)"
