"""Hook functions only: ids, lazy "module:attr" targets, one-line summaries. No torch import."""

from c3_core.api import hookimpl


@hookimpl
def c3_register_operators(registry):
    registry.add("example.contrast", "c3_plugin_template.operators.contrast:Contrast", "global contrast change about the mean")


@hookimpl
def c3_register_datasets(registry):
    registry.add("example.demo", "c3_plugin_template.data.demo:make_demo_dataset", "tiny procedural cohort", task="multiclass", demo=True, default_model="example.demo_cnn", default_neighbourhood="c3_plugin_template:neighbourhoods/default.toml")


@hookimpl
def c3_register_models(registry):
    registry.add("example.demo_cnn", "c3_plugin_template.models:demo_cnn", "tiny CNN", task="multiclass", architecture="SmallCNN", spatial_dims=2, demo=True)
