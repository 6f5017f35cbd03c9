"""The loss network: VGG's ImageNet weights (`weights`), its features (`vgg`) and the perceptual losses (`losses`)."""
