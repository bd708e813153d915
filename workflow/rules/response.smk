# Lesion matching across the time points of a subject and response by RECIST 1.1,
# mRECIST, Choi and volumetric criteria. Subjects with one time point get none.


def response_inputs(wildcards):
    if wildcards.subject not in FOLLOWED:
        raise WorkflowError(f"subject {wildcards.subject} has one time point: no response assessment")
    inputs = {
        "measurements": [measurements_of(scan) for scan in SHEET.scans_of(wildcards.subject)],
        "settings": settings_file("response"),
    }
    overrides = response_overrides(wildcards.subject)
    if overrides:
        inputs["overrides"] = overrides
    return inputs


def response_overrides(subject):
    """config/overrides/<subject>.yaml (or .json) when the user wrote one."""
    folder = config["response_overrides"]
    if not folder:
        return None
    for suffix in (".yaml", ".yml", ".json"):
        path = Path(folder) / f"{subject}{suffix}"
        if path.is_file():
            return str(path)
    return None


def response_options(wildcards):
    folders = [str(Path(measurements_of(scan)).parent) for scan in SHEET.scans_of(wildcards.subject)]
    options = quoted(*folders)
    overrides = response_overrides(wildcards.subject)
    if overrides:
        options += " --overrides " + quoted(overrides)
    return options


rule respond:
    input:
        unpack(response_inputs),
    output:
        response=f"{OUT}/{{subject}}/response.json",
    params:
        limit=thread_limit,
        options=response_options,
    log:
        "logs/respond/{subject}.log",
    threads: resources_of("respond", "threads")
    resources:
        mem_mb=resources_of("respond", "mem_mb"),
        runtime=runtime_of("respond"),
    shell:
        "{params.limit} {LIVERBURDEN} respond {params.options} -o {output.response:q} --subject {wildcards.subject}"
        " --settings {input.settings:q} > {log:q} 2>&1"
