"""Interop with the two layouts multimodal recommenders share data in: MMRec and LATTICE.

- :func:`import_mmrec` (:mod:`~alignrec_data.interop.mmrec_import`): an MMRec dataset folder
  (``<name>.inter`` and optional id maps ``u_id_mapping.csv``, ``i_id_mapping.csv``); its
  ``*.npy`` item features become feature variants (``image_feat.npy`` -> ``mmrec-image``,
  ``text_feat.npy`` -> ``mmrec-text``, another ``<stem>.npy`` -> ``mmrec-<stem>``).
- :func:`import_lattice` (:mod:`~alignrec_data.interop.lattice_import`): the LATTICE / MMHCL
  layout (``train.json``, ``val.json``, ``test.json``; optional ``user2id.json``,
  ``item2id.json``).
- :func:`export_mmrec` (:mod:`~alignrec_data.interop.export`): a prepared dataset to the MMRec
  / AlignRec layout, written by :func:`write_export`, the one writer of this layout.

Imports keep the ids of the source (they must be contiguous from 0,
:mod:`~alignrec_data.interop.ids`) and write the prepared layout of
:mod:`alignrec_data.schema` into ``<data-dir>/<name>/prepared/``
(:mod:`~alignrec_data.interop.prepared`). Unknown ratings and timestamps are stored as nulls
(the LATTICE layout has neither) and exported as empty cells, so export then import gives
identical tables.

Safety: every source file is parsed and checked (:mod:`~alignrec_data.interop.tables`: format,
integer range, contiguous ids) before the first byte is written, and ids are range-checked
before anything is allocated by id. An import over a dataset that already has ``prepared/``
needs ``overwrite=True`` and then removes the folders that were built on the old items
(:data:`DEPENDENT_FOLDERS`). An export writes only its own files into ``out``, all or none,
and never deletes a file it did not write.
"""

from alignrec_data.interop.export import EXPORT_MARKER, export_mmrec, mmrec_frames, write_export
from alignrec_data.interop.lattice_import import import_lattice
from alignrec_data.interop.mmrec_import import import_mmrec
from alignrec_data.interop.prepared import DEPENDENT_FOLDERS

__all__ = [
    "DEPENDENT_FOLDERS",
    "EXPORT_MARKER",
    "export_mmrec",
    "import_lattice",
    "import_mmrec",
    "mmrec_frames",
    "write_export",
]
