"""The feed-forward network (Johnson et al.): the network (`layout`, `transformer`, its plain twin
`reference_transformer`, `instance_norm`, `padding`), growing a trained one (`widen`, `deepen`), running it
(`stylizer`, `tiled_network` for large images, `litert_runtime` and `litert_tiling` for .tflite files) and
finding trained models (`bundles`)."""
