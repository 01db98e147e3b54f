#!/usr/bin/env bash
# Retrain the learned router from the gateway's stored feedback, check it, calibrate it and
# swap it into the running gateway without a restart, keeping older versions for rollback.
# Run it from cron or a systemd timer: docs/routing-in-gateway.md, "Retraining on a
# schedule and hot-swapping".
#
# Environment:
#   MODELMIX_CONFIG      the gateway's catalog (store, keep_prompts, learned_router, judge)
#   MODELMIX_MASTER_KEY  the gateway's master key (POST /router/reload needs it)
#   MODELMIX_URL         gateway base URL(s), space-separated (default http://127.0.0.1:4000);
#                        with Redis one URL reaches every replica (the reload is broadcast)
#   ROUTER_DIR           where versions live (default /var/lib/modelmix/router); point
#                        learned_router.artifact at $ROUTER_DIR/current
#   CV_FOLDS             cross-validation folds for the metrics and calibration (default 5)
#   CV_MARGIN            refuse a router whose CV APGR is more than this below the live
#                        one's (default 0.02); "none" skips the check (first run)
#   TARGET               calibration target (default strong-share=0.3, named "balanced")
#   KEEP                 versions kept (default 5)
#   TRAIN_ARGS           more `router train` options, e.g. "--data data/routellm/mmlu.csv"
set -euo pipefail

urls=${MODELMIX_URL:-http://127.0.0.1:4000}
root=${ROUTER_DIR:-/var/lib/modelmix/router}
folds=${CV_FOLDS:-5}
margin=${CV_MARGIN:-0.02}
keep=${KEEP:-5}
new="$root/v$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$root"

# 1. Train into a new versioned directory, with CV metrics in its manifest.
# shellcheck disable=SC2086  # TRAIN_ARGS is a list of options
modelmix router train --from-feedback --cv "$folds" --out "$new" ${TRAIN_ARGS:-}
modelmix router info --router "$new" > /dev/null  # loads: a broken artifact stops here

# 2. Calibrate it on the feedback table, out of fold. The table holds users' prompts: it
#    lives in a private temporary directory, removed on exit.
table=$(mktemp -d)
trap 'rm -rf "$table"' EXIT
modelmix router export-feedback --no-judge --out "$table" > /dev/null
modelmix router calibrate --router "$new" --data "$table/feedback_outcomes.jsonl" \
    --cv "$folds" --target "${TARGET:-strong-share=0.3}" --name balanced --default

# 3. Swap it in; the gateway refuses a router that fails to load or to predict, and
#    `--check-cv-margin` refuses one that is worse than the live one.
check=()
if [ "$margin" != none ]; then check=(--check-cv-margin "$margin"); fi
for url in $urls; do
    modelmix router reload --url "$url" --artifact "$new" "${check[@]}" > /dev/null
done

# 4. Point "current" at it (atomically), so a restart or SIGHUP loads the same router.
ln -sfn "$new" "$root/.current.tmp"
mv -Tf "$root/.current.tmp" "$root/current"

# 5. Keep the newest $keep versions for rollback.
find "$root" -mindepth 1 -maxdepth 1 -type d -name 'v*' | sort | head -n "-$keep" \
    | xargs -r rm -rf
echo "$new"
