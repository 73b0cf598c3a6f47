"""The activation shape a site layer is built for."""


def activation_shape(layer, input_shape):
    """``input_shape`` without its batch axis, every dimension known;
    ``ValueError`` naming ``layer`` otherwise (a site's positions are
    fixed at build time)."""
    shape = tuple(input_shape[1:])
    if any(dim is None for dim in shape):
        raise ValueError(
            f"{layer.name}: {type(layer).__name__} needs a fully known "
            f"activation shape (without batch), got {input_shape}"
        )
    return shape
