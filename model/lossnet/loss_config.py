"""`LossConfig`: the layers and weights of the style-transfer objective (no TensorFlow here; the losses
themselves are in `impasto.model.lossnet.losses`)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class LossConfig:
    """Layers and weights of the style-transfer objective.

    Attributes:
        content_layers: ``((layer, weight), ...)``.
        style_layers: ``((layer, weight), ...)``.
        content_weight: multiplies every content term.
        style_weight: multiplies every style term.
        tv_weight: multiplies the total variation term.
    """

    content_layers: tuple[tuple[str, float], ...] = (("block4_conv2", 1.0),)
    style_layers: tuple[tuple[str, float], ...] = tuple(
        (f"block{b}_conv1", 1.0) for b in range(1, 6)
    )
    content_weight: float = 1.0
    style_weight: float = 3e-5
    tv_weight: float = 1e-2

    @classmethod
    def gatys(cls) -> "LossConfig":
        """Gatys et al. 2015: content block4_conv2, style block1_conv1 .. block5_conv1."""
        return cls()

    @classmethod
    def johnson(cls) -> "LossConfig":
        """Johnson et al. 2016: content block2_conv2 (relu2_2), style relu1_2 .. relu4_3."""
        return cls(
            content_layers=(("block2_conv2", 1.0),),
            style_layers=tuple((name, 1.0)
                               for name in ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")),
            content_weight=1.0,
            style_weight=2e-4,
            tv_weight=1.0,
        )

    @property
    def content_layer_weights(self) -> dict[str, float]:
        """``{layer: content_weight * layer weight}``."""
        return {layer: self.content_weight * weight for layer, weight in self.content_layers}

    @property
    def style_layer_weights(self) -> dict[str, float]:
        """``{layer: style_weight * layer weight}``."""
        return {layer: self.style_weight * weight for layer, weight in self.style_layers}

    @property
    def term_names(self) -> tuple[str, ...]:
        """Names of the terms `style_transfer_loss` reports, in a fixed order: subtotals, then layers."""
        return ("content", "style", "tv", *(f"content/{layer}" for layer, _ in self.content_layers),
                *(f"style/{layer}" for layer, _ in self.style_layers))

    @property
    def all_layers(self) -> tuple[str, ...]:
        """Every VGG layer the objective reads, without repeats."""
        return tuple(dict.fromkeys([name for name, _ in self.content_layers + self.style_layers]))
