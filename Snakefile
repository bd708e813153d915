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

from pathlib import Path

from snakemake.utils import min_version

min_version("8.0")

#: The settings: config/config.yaml of the working folder (--directory) when it
#: has one, else the repository's (so that `snakemake --directory X --config
#: samples=...` runs with the documented defaults).
CONFIG_FILE = "config/config.yaml"
if not Path(CONFIG_FILE).is_file():
    CONFIG_FILE = str(Path(workflow.basedir) / CONFIG_FILE)


configfile: CONFIG_FILE


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
