"""The feed-forward network (Johnson et al.): the network (`transformer`, its plain twin `reference_transformer`,
`instance_norm`, `padding`), running it (`stylizer`, `tiled_network` for large images, `litert_runtime` and
`litert_tiling` for .tflite files) and finding trained models (`bundles`)."""
