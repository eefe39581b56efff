"""Registrar hooks of c3-mri: ids and lazy targets only (no torch import)."""

from c3_core.plugins.markers import hookimpl


@hookimpl
def c3_register_operators(registry):
    registry.add("mri.bias_field", "c3_mri.operators.bias_field:BiasField", "B1 receive bias: exp of a separable low-order Legendre field")
    registry.add("mri.b0_distortion", "c3_mri.operators.b0_distortion:B0Distortion", "B0 off-resonance displacement along phase encode with Jacobian")
    registry.add("mri.noise", "c3_mri.operators.noise:MagnitudeNoise", "Rician (1 coil) or non-central chi (L coils) noise at a target SNR")
    registry.add("mri.contrast", "c3_mri.operators.contrast:ProtocolContrast", "Bloch-informed protocol contrast change (SE / SPGR / IR-FLAIR)")
    registry.add("mri.slice_profile", "c3_mri.operators.slice_profile:SliceProfile", "slice profile / thick slices along the slice axis (FWHM in mm)")
    registry.add("mri.gibbs", "c3_mri.operators.kspace:GibbsTruncation", "Gibbs ringing from k-space truncation")
    registry.add("mri.ghosting", "c3_mri.operators.kspace:Ghosting", "N/2 ghosting from alternate-line errors along phase encode")
    registry.add("mri.motion", "c3_mri.operators.kspace:RigidMotion", "rigid head motion between k-space segments")
    registry.add("mri.spike", "c3_mri.operators.kspace:Spike", "k-space spike (herringbone stripes)")


@hookimpl
def c3_register_datasets(registry):
    registry.add(
        "mri.demo",
        "c3_mri.data.demo:make_demo_dataset",
        "MS-lesion FLAIR volumes from the ICBM152 template at 1.5 mm, 3 sites (site C held out)",
        task="segmentation",
        demo=True,
        default_model="mri.unet3d",
        default_neighbourhood="c3_mri:neighbourhoods/default.toml",
        experiment="c3_mri.experiment:EXPERIMENT",
        default_teacher="mri.demo_teacher",  # gates the demo cohort only (trained on phantoms)
        default_gate="c3_mri:gates/demo.json",
    )
    registry.add(
        "mri.nifti",
        "c3_mri.data.nifti:make_nifti_dataset",
        "NIfTI cohort from a CSV (image, mask, site[, tissue]) or a folder; held-out-site split",
        task="segmentation",
        accepts_path=True,
        default_model="mri.unet3d",
        default_neighbourhood="c3_mri:neighbourhoods/default.toml",
    )


@hookimpl
def c3_register_models(registry):
    registry.add(
        "mri.unet3d", "c3_mri.models:unet3d", "MONAI 3D U-Net with sliding-window inference (weights='demo': small demo model)",
        task="segmentation", architecture="monai.networks.nets.UNet", spatial_dims=3,
    )
    registry.add(
        "mri.demo_teacher", "c3_mri.models:demo_teacher",
        "the demo cohort's validity-gate teacher: a separately trained segmenter (SegResNet, seed 1)",
        task="segmentation", architecture="monai.networks.nets.SegResNet", spatial_dims=3, demo=True,
    )


@hookimpl
def c3_register_editors(registry):
    registry.add("mri.lesion_removed", "c3_mri.editors.inpainting:MriLesionRemoved", "interventional: the lesion mask (dilated) inpainted from its surroundings")
    registry.add("mri.lesion_only", "c3_mri.editors.inpainting:MriLesionOnly", "interventional: the lesion kept, the background suppressed")
    registry.add("mri.healthy_control", "c3_mri.editors.inpainting:MriHealthyControl", "control: a random healthy region of the lesion's size inpainted")
    registry.add("mri.lesion_volume", "c3_mri.editors.lesion_volume:MriLesionVolume", "interventional: the volume of the lesions >= 0.05 mL set (3-D Seg-CFT; weights from `c3 editor fit`)")
