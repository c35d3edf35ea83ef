"""Refusals the text front end can raise; all are 400s a user fixes by editing the request."""

from __future__ import annotations

from console.errors import VoxfleetError


class TextInvalid(VoxfleetError):
    """The synthesis text is empty, too long or otherwise unusable."""

    code = "invalid_text"
    status = 400


class InstructionInvalid(VoxfleetError):
    """The instruction (dialect/emotion/style wording) is too long or unusable."""

    code = "invalid_instruction"
    status = 400
