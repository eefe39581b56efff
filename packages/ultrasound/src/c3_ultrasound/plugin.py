"""Registrar hooks of c3-ultrasound: ids, lazy "module:attr" targets, one-line summaries.

This module imports no torch and holds no logic, so listing plugins stays cheap.
"""

from c3_core.api import hookimpl


@hookimpl
def c3_register_domains(registry):
    from c3_ultrasound.intensity_domains import B_MODE, ENVELOPE  # Domain constants: no torch

    registry.add(ENVELOPE)
    registry.add(B_MODE)


@hookimpl
def c3_register_operators(registry):
    registry.add("us.speckle", "c3_ultrasound.operators.speckle:Speckle", "multiplicative speckle (Rician / Rayleigh / K amplitude) correlated by the PSF")
    registry.add("us.attenuation_tgc", "c3_ultrasound.operators.attenuation:AttenuationTGC", "round-trip depth attenuation with a mis-set TGC slope (net depth gain error)")
    registry.add("us.gain", "c3_ultrasound.operators.gain:Gain", "overall receive gain change in dB")


@hookimpl
def c3_register_datasets(registry):
    registry.add(
        "us.demo",
        "c3_ultrasound.data.demo:make_demo_dataset",
        "procedural B-mode phantoms (envelope) with or without a hypoechoic lesion",
        task="multiclass",
        demo=True,
        default_model="us.demo_cnn",
        default_neighbourhood="c3_ultrasound:neighbourhoods/default.toml",
        experiment="c3_ultrasound.experiment:EXPERIMENT",
    )


@hookimpl
def c3_register_models(registry):
    registry.add("us.demo_cnn", "c3_ultrasound.models:demo_cnn", "small CNN on log-compressed B-mode, trained on first use", task="multiclass", architecture="EchoCNN", spatial_dims=2, demo=True)
