# The synthetic demo cohort: `liverburden phantom` writes CT phantoms with exact
# labels into resources/demo/. The default config/samples.tsv lists those files,
# so on a fresh clone `snakemake --cores 2` generates the cohort and runs
# everything on it; a sheet that lists no demo files never triggers this rule.


def demo_files():
    """Files of the demo folder that the sample sheet refers to (outputs of demo_cohort)."""
    folder = Path(os.path.abspath(DEMO))
    files = []
    for scan in SHEET.scans:
        for path in (scan.image, scan.arterial_image, scan.mask):
            if path is not None and (path == folder or folder in path.parents):
                files.append(smk_path(path))
    return sorted(set(files))


rule demo_cohort:
    output:
        samples=f"{DEMO}/samples.tsv",
        samples_truth=f"{DEMO}/samples_truth.tsv",
        truth=f"{DEMO}/truth.json",
        images=demo_files(),
    params:
        limit=thread_limit,
        folder=DEMO,
        subjects=config["demo"]["subjects"],
        seed=config["demo"]["seed"],
        size=config["demo"]["size"],
    log:
        "logs/demo_cohort.log",
    threads: resources_of("demo_cohort", "threads")
    resources:
        mem_mb=resources_of("demo_cohort", "mem_mb"),
        runtime=runtime_of("demo_cohort"),
    shell:
        # Snakemake creates the outputs' (empty) folders before the job; the phantom
        # command only writes into a new, empty or earlier-cohort folder: drop them first
        "find {params.folder:q} -depth -type d -empty -delete 2> /dev/null;"
        " {params.limit} {LIVERBURDEN} phantom {params.folder:q} --subjects {params.subjects} --seed {params.seed}"
        " --size {params.size} > {log:q} 2>&1"
