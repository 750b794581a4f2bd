# Sourced (`. .ci/comfyui_host.sh`) from the repository root, inside the test
# venv, by the README's test command and so by .ci/run: gets the ComfyUI host
# the ComfyUI tests run in, from the snapshot beside the repository
# (../shared/hosts/ComfyUI-0.3.64.tar.gz, read-only), never from a source host.
#
# * unpacks it OUTSIDE the repository, once, into $SOULID_HOST_DIR
#   (default ${TMPDIR:-/tmp}/soulid-host-<uid>), and exports COMFYUI_PATH;
# * writes the host's requirements without its torch/torchvision/torchaudio
#   lines, plus `requests` (its frontend manager imports it; the list omits
#   it), to $SOULID_HOST_REQUIREMENTS, for the one `pip install` that follows
#   (it pins torch in the same command: unpinned, pip would upgrade torch);
# * installs the newest published frontend (comfyui-frontend-package
#   $SOULID_NEW_FRONTEND) with `pip install --target` beside the host and
#   exports SOULID_NEW_FRONTEND_ROOT (its static folder, for --front-end-root).
# The host's own frontend (1.27.10) comes with its requirements.
_soulid_tgz="${SOULID_HOST_TARBALL:-$PWD/../shared/hosts/ComfyUI-0.3.64.tar.gz}"
_soulid_dir="${SOULID_HOST_DIR:-${TMPDIR:-/tmp}/soulid-host-$(id -u)}"
export SOULID_NEW_FRONTEND="${SOULID_NEW_FRONTEND:-1.58.1}"
if [ ! -f "$_soulid_tgz" ]; then
  echo "ComfyUI host snapshot not found: $_soulid_tgz (set SOULID_HOST_TARBALL)" >&2
  false
elif mkdir -p "$_soulid_dir" && { [ -f "$_soulid_dir/ComfyUI-0.3.64/main.py" ] || {
       rm -rf "$_soulid_dir/.unpack" && mkdir "$_soulid_dir/.unpack" &&
       tar xzf "$_soulid_tgz" -C "$_soulid_dir/.unpack" &&
       mv "$_soulid_dir/.unpack/ComfyUI-0.3.64" "$_soulid_dir/ComfyUI-0.3.64"; }; } &&
     export COMFYUI_PATH="$_soulid_dir/ComfyUI-0.3.64" &&
     export SOULID_HOST_REQUIREMENTS="$_soulid_dir/requirements-host.txt" &&
     { grep -viE '^[[:space:]]*(torch|torchvision|torchaudio)[[:space:]]*([<>=!~;[]|$)' "$COMFYUI_PATH/requirements.txt";
       echo requests; } > "$SOULID_HOST_REQUIREMENTS" &&
     export SOULID_NEW_FRONTEND_ROOT="$_soulid_dir/frontend-$SOULID_NEW_FRONTEND/comfyui_frontend_package/static" &&
     { [ -f "$SOULID_NEW_FRONTEND_ROOT/index.html" ] ||
       pip install -q --no-deps --target "$_soulid_dir/frontend-$SOULID_NEW_FRONTEND" \
         "comfyui-frontend-package==$SOULID_NEW_FRONTEND"; }; then
  echo "ComfyUI host: $COMFYUI_PATH; new frontend $SOULID_NEW_FRONTEND: $SOULID_NEW_FRONTEND_ROOT"
else
  echo "could not set up the ComfyUI host in $_soulid_dir" >&2
  false
fi
