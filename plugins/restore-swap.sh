# Shared by the built-in strategies' restore scripts (included at build time). Each restore pod
# works in directories of its own on the target (named after the pod), and replaces the target's
# contents in two steps that can be undone: the old entries are moved aside, then the restored
# ones moved in; if either step fails, what moved is moved back, so that the target is never left
# empty or half-replaced. Renames stay within the target's filesystem.
work="/data/.backup-restore-${HOSTNAME:-$(hostname)}"
staging="$work/new"
old="$work/old"
# move_all FROM TO [all]: moves every entry of FROM into TO, stopping at the first that does not
# move. From the target, its lost+found and the restores' work directories stay.
move_all() {
  (
    cd "$1" || exit 1
    for f in * .[!.]* ..?*; do
      [ -e "$f" ] || [ -L "$f" ] || continue
      if [ "${3:-}" != all ]; then
        case "$f" in lost+found|.backup-restore-*) continue ;; esac
      fi
      [ "$f" = lost+found ] && continue
      mv "$f" "$2/" || exit 1
    done
  )
}
# prepare_work: a fresh work directory on the target, for this restore pod only.
prepare_work() {
  rm -rf "$work" && mkdir -p "$staging" "$old" || fail "cannot create $work on the target; its contents were not changed"
}
# swap_in DIR: the target's contents become DIR's entries.
swap_in() {
  if ! move_all /data "$old"; then
    move_all "$old" /data all && rm -rf "$work"
    fail "moving the target's old contents aside failed; they are back in place (left over, if any: $old)"
  fi
  if ! move_all "$1" /data all; then
    move_all /data "$1"
    move_all "$old" /data all || fail "moving the restored files into place failed, and so did moving the old contents back: they are in $old on the target"
    rm -rf "$work"
    fail "moving the restored files into place failed; the target's previous contents are back in place"
  fi
  chmod "$(stat -c %a "$1")" /data && chown "$(stat -c %u:%g "$1")" /data || true
  rm -rf "$work"
}
