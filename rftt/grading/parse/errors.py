"""Why an answer could not be read."""


class MathParseError(ValueError):
    """The text is not an answer this grammar understands."""


class TooLarge(MathParseError):
    """The text is an expression too large to build safely."""
