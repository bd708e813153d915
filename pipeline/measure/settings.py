"""Settings of ``liverburden measure`` (the ``measure:`` section of the workflow config)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os

from pipeline.errors import InputError


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
    """Settings of the tumour-burden measurement, with their units and sources.

    Attributes
    ----------
    min_lesion_volume_ml
        Tumour components smaller than this (mL) are noise, not lesions: they
        are counted in ``noise_component_count`` / ``noise_volume_ml`` and
        stay in the tumour volume, but are not listed as lesions. 0.05 mL is a
        sphere of 4.6 mm diameter, well below the 10 mm RECIST measurability
        limit (Eisenhauer et al. 2009) and about 60 voxels of a typical
        portal-venous CT (0.75 x 0.75 x 1.5 mm). Project choice.
    lesion_connectivity
        Neighbourhood that joins tumour voxels into one lesion: 26 (faces,
        edges and corners, the default: a lesion is one piece if its voxels
        touch at all, as in the segmentation post-processing), 18 or 6 (faces
        only). Project choice.
    split_touching_lesions
        Split a tumour component that holds several touching lesions with a
        watershed on its distance map (``--split-touching``). Off by default:
        it changes lesion counts and must be a deliberate choice.
    split_min_depth_mm
        Watershed markers are maxima of the distance map (mm from the
        component's surface) at least this much higher than the saddle that
        joins them: two lesions are split only when the waist between them is
        narrower, by twice this depth, than each lesion. Project choice.
    involvement_band_thresholds_percent
        Increasing thresholds (%) that divide hepatic involvement into bands
        (``<25``, ``25-50``, ``50-75``, ``>=75`` by default): 25 % (CLARINET,
        Caplin et al., NEJM 2014), 50 % (Milan criteria for transplantation of
        NET metastases), 75 % (PRRT series). See docs/response-criteria.md.
    measurable_min_diameter_mm
        RECIST 1.1 measurability: longest axial diameter at least this (mm)
        on CT with slices no thicker than ``thick_slice_mm`` (Eisenhauer et
        al. 2009).
    thick_slice_mm
        Slice thickness (mm) above which RECIST 1.1 requires a longest
        diameter of at least twice the slice thickness instead.
    viable_margin_hu
        mRECIST viable tumour (Lencioni & Llovet 2010): tumour voxels whose
        arterial-phase attenuation is at least the mean of the surrounding
        liver parenchyma plus this margin (HU). 0 by default
        (docs/response-criteria.md).
    lipiodol_min_hu
        Voxels above this attenuation (HU) in both the portal and the arterial
        phase are lipiodol deposits after TACE: never viable tumour, and left
        out of the parenchyma reference. 300 HU (docs/response-criteria.md).
    peri_tumoral_ring_mm
        Width (mm) of the ring of liver parenchyma around each lesion whose
        mean arterial attenuation is the lesion's viability reference.
        10 mm: project choice, about one to two lesion radii for small lesions
        and clear of the lesion's partial-volume rim.
    viable_min_component_ml
        Connected viable parts smaller than this (mL) are image noise, not
        viable tumour; the viable diameter is measured on the largest
        connected viable part. Project choice (as ``min_lesion_volume_ml``).
    peri_tumoral_ring_min_volume_ml
        When a lesion's ring holds less parenchyma than this (mL), for
        example a lesion surrounded by other tumour, the whole liver
        parenchyma is its reference instead. Project choice.
    liver_volume_plausible_ml
        Liver volumes (including tumour, mL) outside this range get the flag
        ``liver_volume_implausible``: adult livers are about 1 to 2.5 L;
        500 to 5000 mL leaves room for small and for heavily infiltrated
        livers. Project choice.
    many_noise_components
        Flag ``many_noise_components`` when at least this many noise
        components are found (a noisy segmentation). Project choice.
    """

    min_lesion_volume_ml: float = 0.05
    lesion_connectivity: int = 26
    split_touching_lesions: bool = False
    split_min_depth_mm: float = 2.0
    involvement_band_thresholds_percent: tuple[float, ...] = (25.0, 50.0, 75.0)
    measurable_min_diameter_mm: float = 10.0
    thick_slice_mm: float = 5.0
    viable_margin_hu: float = 0.0
    lipiodol_min_hu: float = 300.0
    peri_tumoral_ring_mm: float = 10.0
    peri_tumoral_ring_min_volume_ml: float = 1.0
    viable_min_component_ml: float = 0.05
    liver_volume_plausible_ml: tuple[float, float] = (500.0, 5000.0)
    many_noise_components: int = 20


def check_settings(settings: MeasureSettings, source: str | os.PathLike[str] = "settings") -> None:
    """Raise :class:`InputError` for settings that cannot be used.

    ``source`` names where the settings came from (the YAML file, or a flag).
    """

    def number(name: str, value: float, *, minimum: float = 0.0, strict: bool = False) -> None:
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            raise InputError(source, f"setting {name!r} is {value!r}", f"a finite number {bound}")

    number("min_lesion_volume_ml", settings.min_lesion_volume_ml)
    if settings.lesion_connectivity not in (6, 18, 26):
        raise InputError(
            source,
            f"setting 'lesion_connectivity' is {settings.lesion_connectivity!r}",
            "6, 18 or 26",
        )
    number("split_min_depth_mm", settings.split_min_depth_mm, strict=True)
    thresholds = tuple(settings.involvement_band_thresholds_percent)
    if (
        not thresholds
        or not all(math.isfinite(t) and 0 < t < 100 for t in thresholds)
        or any(b <= a for a, b in itertools.pairwise(thresholds))
    ):
        raise InputError(
            source,
            f"setting 'involvement_band_thresholds_percent' is {list(thresholds)!r}",
            "strictly increasing percentages between 0 and 100, e.g. [25, 50, 75]",
        )
    number("measurable_min_diameter_mm", settings.measurable_min_diameter_mm)
    number("thick_slice_mm", settings.thick_slice_mm, strict=True)
    for name in ("viable_margin_hu", "lipiodol_min_hu"):
        value = getattr(settings, name)
        if not math.isfinite(value):
            raise InputError(source, f"setting {name!r} is {value!r}", "a finite number in HU")
    number("peri_tumoral_ring_mm", settings.peri_tumoral_ring_mm, strict=True)
    number("peri_tumoral_ring_min_volume_ml", settings.peri_tumoral_ring_min_volume_ml)
    number("viable_min_component_ml", settings.viable_min_component_ml)
    plausible = tuple(settings.liver_volume_plausible_ml)
    if (
        len(plausible) != 2
        or not all(math.isfinite(v) and v >= 0 for v in plausible)
        or (plausible[1] <= plausible[0])
    ):
        raise InputError(
            source,
            f"setting 'liver_volume_plausible_ml' is {list(plausible)!r}",
            "[lowest, highest] in mL, e.g. [500, 5000]",
        )
    if settings.many_noise_components < 1:
        raise InputError(
            source, f"setting 'many_noise_components' is {settings.many_noise_components!r}", ">= 1"
        )
