# Per-subject HTML reports, the cohort table and figures, and DICOM SEG objects
# for scans that came as DICOM series.


def report_inputs(wildcards):
    scans = SHEET.scans_of(wildcards.subject)
    inputs = {
        "measurements": [measurements_of(scan) for scan in scans],
        "images": [smk_path(scan.image) for scan in scans],
        "settings": settings_file("report"),
    }
    if wildcards.subject in FOLLOWED:
        inputs["response"] = f"{OUT}/{wildcards.subject}/response.json"
    return inputs


def report_options(wildcards):
    scans = SHEET.scans_of(wildcards.subject)
    options = quoted(*[str(Path(measurements_of(scan)).parent) for scan in scans])
    options += " --images " + quoted(*[smk_path(scan.image) for scan in scans])
    if wildcards.subject in FOLLOWED:
        options += " --response " + quoted(f"{OUT}/{wildcards.subject}/response.json")
    for scan in scans:
        if scan.treatment:
            options += " --treatment " + quoted(f"{scan.timepoint}={scan.treatment}")
    return options


rule report:
    input:
        unpack(report_inputs),
    output:
        report=report(
            f"{OUT}/{{subject}}/report.html",
            caption="../report/subject_report.rst",
            category="Subjects",
            labels={"subject": "{subject}"},
        ),
    params:
        limit=thread_limit,
        options=report_options,
    log:
        "logs/report/{subject}.log",
    threads: resources_of("report", "threads")
    resources:
        mem_mb=resources_of("report", "mem_mb"),
        runtime=runtime_of("report"),
    shell:
        "{params.limit} {LIVERBURDEN} report {params.options} --subject {wildcards.subject} -o {output.report:q}"
        " --settings {input.settings:q} > {log:q} 2>&1"


rule cohort:
    input:
        measurements=[measurements_of(scan) for scan in SHEET.scans],
        responses=[f"{OUT}/{subject}/response.json" for subject in SUBJECTS if subject in FOLLOWED],
        settings=settings_file("report"),
    output:
        table=report(f"{OUT}/cohort.csv", caption="../report/cohort_table.rst", category="Cohort"),
        waterfall=report(f"{OUT}/cohort/waterfall.png", caption="../report/waterfall.rst", category="Cohort"),
        spider=report(f"{OUT}/cohort/spider.png", caption="../report/spider.rst", category="Cohort"),
        involvement=report(
            f"{OUT}/cohort/involvement.png", caption="../report/involvement.rst", category="Cohort"
        ),
    params:
        limit=thread_limit,
        folders=quoted(*[str(Path(measurements_of(scan)).parent) for scan in SHEET.scans]),
        responses=lambda wildcards, input: (" --responses " + quoted(*input.responses)) if input.responses else "",
        figures=f"{OUT}/cohort",
    log:
        "logs/cohort.log",
    threads: resources_of("cohort", "threads")
    resources:
        mem_mb=resources_of("cohort", "mem_mb"),
        runtime=runtime_of("cohort"),
    shell:
        "{params.limit} {LIVERBURDEN} cohort {params.folders}{params.responses} -o {output.table:q}"
        " --figures {params.figures:q} --settings {input.settings:q} > {log:q} 2>&1"


def dicom_seg_inputs(wildcards):
    scan = scan_of(wildcards)
    if not scan.image_is_dicom:
        raise WorkflowError(f"{scan.subject} {scan.timepoint}: the image is not a DICOM series")
    return {"segmentation": segmentation_of(scan), "dicom": smk_path(scan.image)}


rule dicom_seg:
    input:
        unpack(dicom_seg_inputs),
    output:
        seg=f"{OUT}/{{subject}}/{{timepoint}}/segmentation.dcm",
    params:
        limit=thread_limit,
    log:
        "logs/dicom_seg/{subject}/{timepoint}.log",
    threads: resources_of("dicom_seg", "threads")
    resources:
        mem_mb=resources_of("dicom_seg", "mem_mb"),
        runtime=runtime_of("dicom_seg"),
    shell:
        "{params.limit} {LIVERBURDEN} dicom-seg {input.segmentation:q} {input.dicom:q} -o {output.seg:q} > {log:q} 2>&1"
