"""Tumour-burden measurement of one scan (``liverburden measure``).

Pure array functions, reusable by the response engine and ``evaluate``:

* :mod:`pipeline.measure.lesions`: lesions as connected components
  (:func:`~pipeline.measure.lesions.label_lesions`, 26-connected by default),
  noise components, optional watershed split of touching lesions;
* :mod:`pipeline.measure.diameters`: longest axial diameter and perpendicular
  short axis (:func:`~pipeline.measure.diameters.axial_diameters`);
* :mod:`pipeline.measure.volumes`: involvement, its bands, RECIST
  measurability;
* :mod:`pipeline.measure.viable`: mRECIST viable tumour and lipiodol;
* :mod:`pipeline.measure.scan`: everything for one scan from SimpleITK images
  (:func:`~pipeline.measure.scan.measure_scan`);
* :mod:`pipeline.measure.command`: the command line (files in, files out).

Arrays are indexed ``[z, y, x]``, spacings are ``(x, y, z)`` in mm; results are
in mm, mL and HU.
"""
