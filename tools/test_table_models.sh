# Sourced by the TEST=1 blocks of tools/evaluate_*.sh: the models every held-out test table (docs/detection_results.md)
# compares the shipped detectors with. Needs M (Resources/Models); the Table 1 and global-to-local models come from
# tools/reproduce_detectors.sh and tools/train_global_to_local.sh, the earlier shipped ones are copies in build/.
BASELINE_MODELS=(
  build/shipped_s3/mr_session3.json build/shipped_s3/us_session3.json
  build/previous_models/mr_previous.json build/previous_models/us_previous.json
  "$M"/mr_landmarks_g2l-global.json "$M"/us_landmarks_g2l-global.json
  "$M"/mr_landmarks_dsnt-dist.json "$M"/us_landmarks_dsnt-dist.json
  build/models/{mr,us}_{dsnt-dist,dsnt-var,dsnt,heatmap,regression}.json
  build/models_g2l/{mr,us}_g2l-global.json build/models_g2l/us_g2l-global_partial.json
  build/models_g2l/{mr,us}_{dsnt-dist+dsnt-local,dsnt-dist+g2l-local,g2l-global+g2l-local}.json
  build/models_g2l/us_g2l-global_partial+g2l-local.json
)
