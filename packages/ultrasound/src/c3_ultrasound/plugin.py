"""Registrar hooks: ids and lazy targets only."""

from c3_core.plugins.markers import hookimpl


@hookimpl
def c3_register_operators(registry):
    registry.add("us.speckle", "c3_ultrasound.operators:Speckle", "Rayleigh / K-distributed multiplicative speckle shaped by the PSF")
    registry.add("us.attenuation_tgc", "c3_ultrasound.operators:AttenuationTGC", "depth attenuation with a mis-set time-gain compensation")
    registry.add("us.gain", "c3_ultrasound.operators:Gain", "overall receive gain change in dB")


@hookimpl
def c3_register_datasets(registry):
    registry.add("us.demo", "c3_ultrasound.demo:make_demo_dataset", "procedural B-mode phantoms with or without a hypoechoic lesion", task="multiclass", demo=True, default_model="us.demo_cnn", default_neighbourhood="c3_ultrasound:neighbourhoods/default.toml")


@hookimpl
def c3_register_models(registry):
    registry.add("us.demo_cnn", "c3_ultrasound.models:demo_cnn", "small CNN on log-compressed B-mode", task="multiclass", architecture="SmallCNN", spatial_dims=2, demo=True)
