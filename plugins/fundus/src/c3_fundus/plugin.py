"""Registrar hooks of c3-fundus: ids and lazy targets only (no torch import)."""

from c3_core.plugins.markers import hookimpl


@hookimpl
def c3_register_operators(registry):
    registry.add("fundus.illumination", "c3_fundus.operators.illumination:Illumination", "decentred light source: uneven illumination, bright halo or dark hole")
    registry.add("fundus.vignetting", "c3_fundus.operators.illumination:Vignetting", "cos^4 radial fall-off within the field of view")
    registry.add("fundus.sensor", "c3_fundus.operators.sensor:Sensor", "Poisson shot and read noise, PRNU/DSNU, ADC, Bayer mosaic and bilinear demosaic")
    registry.add("fundus.camera_response", "c3_fundus.operators.camera_response:CameraResponse", "exposure, white balance (colour temperature) and tone curve")
    registry.add("fundus.optics", "c3_fundus.operators.optics:Optics", "defocus, small motion blur, media haze, veiling glare and rim flare")
    registry.add("fundus.jpeg", "c3_fundus.operators.jpeg:Jpeg", "JPEG compression at a quality level (8x8 DCT quantisation in torch)")
    registry.add("fundus.field_of_view", "c3_fundus.operators.field_of_view:FieldOfView", "aperture diameter, magnification and decentration; masks and FOV move along")


@hookimpl
def c3_register_datasets(registry):
    registry.add(
        "fundus.demo",
        "c3_fundus.data.demo:make_demo_dataset",
        "procedural fundus photographs graded 0-4 with lesion and FOV masks (embedded demo)",
        task="multiclass",
        demo=True,
        default_model="fundus.demo_cnn",
        default_neighbourhood="c3_fundus:neighbourhoods/default.toml",
        experiment="c3_fundus.experiment:EXPERIMENT",
        default_teacher="fundus.demo_teacher",  # gates the demo cohort only (trained on phantoms)
        default_gate="c3_fundus:gates/demo.json",
    )
    registry.add(
        "fundus.csv",
        "c3_fundus.data.csv_cohort:make_csv_dataset",
        "EyePACS / Messidor-2 / APTOS style CSV of image files and grades 0-4",
        task="multiclass",
        accepts_path=True,
        default_model="fundus.efficientnet_b3",
        default_neighbourhood="c3_fundus:neighbourhoods/default.toml",
    )


@hookimpl
def c3_register_models(registry):
    registry.add("fundus.demo_cnn", "c3_fundus.models:demo_cnn", "small CNN trained on the demo cohort (five grades)", task="multiclass", architecture="SmallCNN", spatial_dims=2, demo=True)
    registry.add("fundus.demo_teacher", "c3_fundus.models:demo_teacher", "the demo cohort's validity-gate teacher (another architecture and seed than the demo CNN)", task="multiclass", architecture="PoolResNet", spatial_dims=2, demo=True)
    registry.add("fundus.efficientnet_b3", "c3_fundus.models:efficientnet_b3", "timm EfficientNet-B3, five DR grades", task="multiclass", architecture="efficientnet_b3", spatial_dims=2)


@hookimpl
def c3_register_editors(registry):
    registry.add("fundus.lesion_removed", "c3_fundus.editors.inpainting:FundusLesionRemoved", "interventional: the lesion mask (dilated) inpainted from its surroundings")
    registry.add("fundus.lesion_only", "c3_fundus.editors.inpainting:FundusLesionOnly", "interventional: the lesion kept, the background suppressed")
    registry.add("fundus.healthy_control", "c3_fundus.editors.inpainting:FundusHealthyControl", "control: a random healthy region of the lesion's size inpainted")
    diff = "c3_fundus.editors.diffusion"
    registry.add("fundus.diffusion", f"{diff}:FundusDiffusion", "admissible: label-conditioned SDEdit resampling, lesions and outside-FOV held")
    registry.add("fundus.diffusion_illumination", f"{diff}:FundusDiffusionIllumination", "admissible: illumination falloff, diffusion-guided")
    registry.add("fundus.diffusion_vessel_contrast", f"{diff}:FundusDiffusionVesselContrast", "admissible: vessel contrast, diffusion-guided")
