"""Registrar hooks of c3-fundus: ids and lazy targets only (no torch import)."""

from c3_core.plugins.markers import hookimpl


@hookimpl
def c3_register_operators(registry):
    registry.add("fundus.illumination", "c3_fundus.operators.illumination:Illumination", "decentred light source: uneven illumination, halo or dark hole")
    registry.add("fundus.vignetting", "c3_fundus.operators.vignetting:Vignetting", "cos^4 radial fall-off about a decentred optical axis")
    registry.add("fundus.sensor", "c3_fundus.operators.sensor:Sensor", "shot and read noise, PRNU/DSNU, Bayer mosaic and demosaic")
    registry.add("fundus.camera_response", "c3_fundus.operators.camera_response:CameraResponse", "exposure, colour temperature and tone-curve change")
    registry.add("fundus.defocus", "c3_fundus.operators.optics:Defocus", "defocus blur with a disc point-spread function")
    registry.add("fundus.haze", "c3_fundus.operators.optics:Haze", "veiling glare / media haze")


@hookimpl
def c3_register_datasets(registry):
    registry.add(
        "fundus.demo",
        "c3_fundus.data.demo:make_demo_dataset",
        "procedural fundus photographs with DR lesions graded 0-4 (embedded demo)",
        task="multiclass",
        demo=True,
        default_model="fundus.demo_cnn",
        default_neighbourhood="c3_fundus:neighbourhoods/default.toml",
    )
    registry.add(
        "fundus.csv",
        "c3_fundus.data.csv_cohort:make_csv_dataset",
        "EyePACS / Messidor-2 / APTOS style CSV of image paths and grades 0-4",
        task="multiclass",
        accepts_path=True,
        default_model="fundus.efficientnet_b3",
        default_neighbourhood="c3_fundus:neighbourhoods/default.toml",
    )


@hookimpl
def c3_register_models(registry):
    registry.add("fundus.demo_cnn", "c3_fundus.models:demo_cnn", "small CNN trained on the demo cohort", task="multiclass", architecture="SmallCNN", spatial_dims=2, demo=True)
    registry.add("fundus.efficientnet_b3", "c3_fundus.models:efficientnet_b3", "timm EfficientNet-B3, five DR grades", task="multiclass", architecture="efficientnet_b3", spatial_dims=2)
