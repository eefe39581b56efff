"""Registrar hooks of c3-cxr: ids and lazy targets only (no torch import)."""

from c3_core.plugins.markers import hookimpl


@hookimpl
def c3_register_operators(registry):
    registry.add("cxr.dose", "c3_cxr.operators.dose:Dose", "lower dose: Poisson + electronic noise in the photon-count domain")
    registry.add("cxr.scatter", "c3_cxr.operators.scatter:Scatter", "scatter-to-primary ratio with a broad kernel")
    registry.add("cxr.sharpness", "c3_cxr.operators.sharpness:Sharpness", "detector MTF / vendor processing between soft and sharp")
    registry.add("cxr.beam_hardening", "c3_cxr.operators.beam_hardening:BeamHardening", "mild non-linear attenuation (beam hardening)")
    registry.add("cxr.tone", "c3_cxr.operators.tone:Tone", "vendor look-up table / window change")
    registry.add("cxr.geometry", "c3_cxr.operators.geometry:Geometry", "small rotation, translation and magnification")
    registry.add("cxr.resolution", "c3_cxr.operators.resolution:Resolution", "pixel-pitch change: coarser detector sampling")
    registry.add("ct.low_dose", "c3_cxr.operators.ct_dose:CTLowDose", "lower dose: Poisson thinning of the sinogram before FBP")
    registry.add("ct.kernel", "c3_cxr.operators.ct_kernel:CTKernel", "reconstruction kernel between soft and sharp")
    registry.add("ct.slice_thickness", "c3_cxr.operators.ct_slice:CTSliceThickness", "thicker slices: partial volume along z (3-D)")
    registry.add("ct.beam_hardening", "c3_cxr.operators.ct_beam_hardening:CTBeamHardening", "beam hardening: cupping and HU shifts")


@hookimpl
def c3_register_datasets(registry):
    registry.add(
        "cxr.demo",
        "c3_cxr.data.demo:make_demo_dataset",
        "procedural chest radiographs with five findings drawn from their causes (embedded demo)",
        task="multilabel",
        demo=True,
        default_model="cxr.demo_cnn",
        default_neighbourhood="c3_cxr:neighbourhoods/default.toml",
        experiment="c3_cxr.experiment:EXPERIMENT",
        default_teacher="cxr.demo_teacher",  # gates the demo cohort only (trained on phantoms)
        default_gate="c3_cxr:gates/demo.json",
    )
    registry.add(
        "cxr.chexpert_csv",
        "c3_cxr.data.chexpert:make_chexpert_dataset",
        "CheXpert / MIMIC-CXR style CSV of PNG/JPEG/DICOM files and five findings",
        task="multilabel",
        accepts_path=True,
        default_model="cxr.densenet121",
        default_neighbourhood="c3_cxr:neighbourhoods/default.toml",
    )


@hookimpl
def c3_register_models(registry):
    registry.add("cxr.demo_cnn", "c3_cxr.models:demo_cnn", "small CNN trained on the demo cohort", task="multilabel", architecture="SmallCNN", spatial_dims=2, demo=True)
    registry.add("cxr.demo_teacher", "c3_cxr.models:demo_teacher", "the demo cohort's validity-gate teacher (another architecture and seed than the demo CNN)", task="multilabel", architecture="PoolResNet", spatial_dims=2, demo=True)
    registry.add("cxr.densenet121", "c3_cxr.models:densenet121", "torchxrayvision DenseNet-121, five findings, raw probabilities", task="multilabel", architecture="xrv.DenseNet", spatial_dims=2)


@hookimpl
def c3_register_editors(registry):
    registry.add("cxr.lesion_removed", "c3_cxr.editors.inpainting:CxrLesionRemoved", "interventional: the lesion mask (dilated) inpainted from its surroundings")
    registry.add("cxr.lesion_only", "c3_cxr.editors.inpainting:CxrLesionOnly", "interventional: the lesion kept, the background suppressed")
    registry.add("cxr.healthy_control", "c3_cxr.editors.inpainting:CxrHealthyControl", "control: a random healthy region of the lesion's size inpainted")
    diff = "c3_cxr.editors.diffusion"
    registry.add("cxr.diffusion", f"{diff}:CxrDiffusion", "admissible: label-conditioned SDEdit resampling, findings region held")
    registry.add("cxr.diffusion_rib_contrast", f"{diff}:CxrDiffusionRibContrast", "admissible: rib-shadow contrast, diffusion-guided")
    registry.add("cxr.diffusion_haze", f"{diff}:CxrDiffusionHaze", "admissible: subtle haze over the lungs, diffusion-guided")
    registry.add("cxr.diffusion_projection", f"{diff}:CxrDiffusionProjection", "admissible: projection geometry (scapular overlap), diffusion-guided")
    registry.add("cxr.heart_area", "c3_cxr.editors.structure:CxrHeartArea", "interventional: heart area set (Seg-CFT, segmentor-measured)")
    registry.add("cxr.lung_area", "c3_cxr.editors.structure:CxrLungArea", "interventional: lung area set (Seg-CFT, segmentor-measured)")
    for finding, cls in (("atelectasis", "Atelectasis"), ("cardiomegaly", "Cardiomegaly"), ("consolidation", "Consolidation"),
                         ("edema", "Edema"), ("effusion", "Effusion")):  # fmt: skip
        registry.add(f"cxr.insert_{finding}", f"c3_cxr.editors.concepts:Insert{cls}", f"interventional: insert {finding} (latent concept direction, anatomy kept)")
        registry.add(f"cxr.delete_{finding}", f"c3_cxr.editors.concepts:Delete{cls}", f"interventional: delete {finding} (latent concept direction, anatomy kept)")
