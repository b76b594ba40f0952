"""Sphinx configuration for the skmixed documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors).
Needs the ``docs`` extra (sphinx, numpydoc, pydata-sphinx-theme, sphinx-gallery,
matplotlib); no network (intersphinx is off). The gallery (``examples/gallery``)
is executed on every build, on small data (about a minute with a warm numba
cache); ``-D plot_gallery=0`` builds without running it.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
# the package next to docs/ (a checkout), unless an installed one is asked for
if os.environ.get("SKMIXED_DOCS_USE_INSTALLED") != "1":
    sys.path.insert(0, str(HERE.parent))

import skmixed  # noqa: E402

project = "skmixed"
author = "the skmixed developers"
copyright = "2026, the skmixed developers"
release = skmixed.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "skmixed_api",
]

# no network during the build: no intersphinx inventories
intersphinx_mapping = {}

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "literal"  # `x` in prose is code, never an unresolved reference

# autodoc / autosummary: the per-object pages are written by the skmixed_api
# extension (only for objects that import in this build), so autosummary only
# draws the tables
autosummary_generate = False
autodoc_typehints = "none"  # numpydoc docstrings carry the types
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False
add_module_names = False

# numpydoc: classes list their methods through autodoc (:members:), not numpydoc,
# and attributes are rendered as a parameter list (no duplicate object targets)
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
numpydoc_use_plots = False
numpydoc_validation_checks = set()


# the examples gallery: every plot_*.py in examples/gallery runs at build time and
# its figures and printed output become the page
sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples" / "gallery"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "abort_on_example_error": True,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 0,  # every page stamps its running time: the docs test counts executed pages by it
    "capture_repr": (),
}

html_theme = "pydata_sphinx_theme"
html_title = f"skmixed {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "changelog": [], "installation": [], "getting_started": []}
html_static_path = []
