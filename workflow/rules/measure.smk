# Tumour burden of each scan: liver and tumour volumes, involvement, lesions
# (diameters, attenuation, viable part when an arterial phase is given).


def measure_inputs(wildcards):
    scan = scan_of(wildcards)
    inputs = {
        "image": smk_path(scan.image),
        "segmentation": segmentation_of(scan),
        "settings": settings_file("measure"),
    }
    if scan.arterial_image is not None:
        inputs["arterial"] = smk_path(scan.arterial_image)
    return inputs


def measure_options(wildcards):
    scan = scan_of(wildcards)
    options = ["--date", scan.date, "--timepoint", scan.timepoint, "--subject", scan.subject]
    if scan.arterial_image is not None:
        options += ["--arterial", smk_path(scan.arterial_image)]
    return quoted(*options)


rule measure:
    input:
        unpack(measure_inputs),
    output:
        measurements=f"{OUT}/{{subject}}/{{timepoint}}/measure/measurements.json",
        lesions_table=f"{OUT}/{{subject}}/{{timepoint}}/measure/lesions.csv",
        lesions=f"{OUT}/{{subject}}/{{timepoint}}/measure/lesions.nii.gz",
        liver=f"{OUT}/{{subject}}/{{timepoint}}/measure/liver.nii.gz",
    params:
        limit=thread_limit,
        folder=f"{OUT}/{{subject}}/{{timepoint}}/measure",
        options=measure_options,
    log:
        "logs/measure/{subject}/{timepoint}.log",
    threads: resources_of("measure", "threads")
    resources:
        mem_mb=resources_of("measure", "mem_mb"),
        runtime=runtime_of("measure"),
    shell:
        "{params.limit} {LIVERBURDEN} measure {input.image:q} {input.segmentation:q} -o {params.folder:q}"
        " {params.options} --settings {input.settings:q} > {log:q} 2>&1"
