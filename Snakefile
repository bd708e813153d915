# liverburden workflow: abdominal CT scans listed in a sample sheet ->
# segmentation -> measurement -> response -> per-subject reports, cohort
# table and figures (and DICOM SEG for DICOM inputs).
#
#   snakemake --cores 2                      # the synthetic demo cohort, out of the box
#   snakemake --cores 2 --config samples=my_cohort.tsv
#   snakemake --report report.html           # after a run: Snakemake's own report
#
# Settings: config/config.yaml (every one commented). Rules: workflow/rules/.
# Each rule calls one `liverburden` command; no analysis happens in the rules.

from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/response.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
