"""The order of the gallery: from a first fit to the specialised uses.

sphinx-gallery imports this class by name (``within_subsection_order``), so the
configuration stays a string that Sphinx can cache.
"""

ORDER = (
    "plot_quickstart.py",
    "plot_grid_search.py",
    "plot_code_sizes.py",
    "plot_rbm_filters.py",
    "plot_pretraining.py",
    "plot_2d_codes.py",
    "plot_rate_distortion.py",
    "plot_anomaly_scores.py",
    "plot_denoising_inpainting.py",
)


class ExampleOrder:
    """Sort key: the examples listed in ``ORDER`` in that order, then any other by name."""

    def __init__(self, src_dir=None):
        self.src_dir = src_dir

    def __call__(self, filename):
        if filename in ORDER:
            return (ORDER.index(filename), filename)
        return (len(ORDER), filename)

    def __repr__(self):
        return "ExampleOrder"
