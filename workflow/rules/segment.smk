# Liver and tumour segmentation of each scan that has no mask in the sample
# sheet (a scan with a mask skips this rule: its mask is measured directly).


def segment_inputs(wildcards):
    scan = scan_of(wildcards)
    if scan.mask is not None:
        raise WorkflowError(
            f"{SHEET.path}, line {scan.line}: {scan.subject} {scan.timepoint} has a mask and is not segmented"
        )
    inputs = {"image": smk_path(scan.image), "settings": settings_file("segment")}
    model = (config.get("segment") or {}).get("model")
    if model:
        inputs["model"] = model  # a changed or missing bundle shows in the plan
    return inputs


rule segment:
    input:
        unpack(segment_inputs),
    output:
        segmentation=f"{OUT}/{{subject}}/{{timepoint}}/segmentation.nii.gz",
        provenance=f"{OUT}/{{subject}}/{{timepoint}}/segmentation.json",
    params:
        limit=thread_limit,
    log:
        "logs/segment/{subject}/{timepoint}.log",
    threads: resources_of("segment", "threads")
    resources:
        mem_mb=resources_of("segment", "mem_mb"),
        runtime=runtime_of("segment"),
        gpu=resources_of("segment", "gpu"),
    shell:
        "{params.limit} {LIVERBURDEN} segment {input.image:q} -o {output.segmentation:q} --threads {threads}"
        " --settings {input.settings:q} > {log:q} 2>&1"
