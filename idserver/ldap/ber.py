"""
The subset of BER that LDAP uses (RFC 4511 §5.1), read strictly.

Decoding works on offsets into one C{bytes} object, so a message is never
copied piece by piece. Every length is checked against the end of its
enclosing element before anything is read, so a truncated or forged length
raises L{DecodeError} instead of reading past the data or allocating what
the length claims.
"""

from __future__ import annotations

__all__ = [
    "DecodeError",
    "MessageTooLarge",
    "encode_boolean",
    "encode_enumerated",
    "encode_integer",
    "encode_length",
    "encode_octet_string",
    "encode_tlv",
    "frame_length",
    "read_boolean",
    "read_integer",
    "read_tlv",
]

# Tag numbers 0x1f and up need the multi-byte tag form, which no LDAP
# element uses.
_TAG_NUMBER_MASK = 0x1F

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_ENUMERATED = 0x0A
TAG_SEQUENCE = 0x30
TAG_SET = 0x31

_SHORT_LENGTHS = [bytes((n,)) for n in range(128)]


class DecodeError(ValueError):
    """
    The bytes are not a valid encoding of the expected LDAP element.
    """


class MessageTooLarge(DecodeError):
    """
    A message announces a length above the configured maximum.
    """


def read_tlv(data: bytes, position: int, end: int) -> tuple[int, int, int]:
    """
    Read the tag and length of the element that starts at C{position}.

    @param end: the end of the enclosing element; the element must fit.
    @return: C{(tag, value_start, value_end)}.
    @raise DecodeError: the element is truncated, uses the multi-byte tag
        or indefinite length form (RFC 4511 §5.1 forbids the latter), or
        its length does not fit in C{end}.
    """
    if position + 2 > end:
        raise DecodeError("truncated element")
    tag = data[position]
    if tag & _TAG_NUMBER_MASK == _TAG_NUMBER_MASK:
        raise DecodeError(f"multi-byte tag 0x{tag:02x}")
    length = data[position + 1]
    position += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0:
            raise DecodeError("indefinite length")
        if count > 4:
            raise DecodeError(f"length of {count} octets")
        if position + count > end:
            raise DecodeError("truncated length")
        length = int.from_bytes(data[position : position + count], "big")
        position += count
    if position + length > end:
        raise DecodeError("element longer than its container")
    return tag, position, position + length


def frame_length(buffer: bytes | bytearray, maximum: int) -> int | None:
    """
    Return the total size of the LDAPMessage at the start of C{buffer}, or
    C{None} while its tag and length have not fully arrived.

    @param maximum: the largest total size accepted.
    @raise MessageTooLarge: the message announces more than C{maximum} bytes.
    @raise DecodeError: the buffer does not start with a SEQUENCE or its
        length is malformed.
    """
    available = len(buffer)
    if available < 2:
        return None
    if buffer[0] != TAG_SEQUENCE:
        raise DecodeError(f"message tag 0x{buffer[0]:02x} is not a SEQUENCE")
    length = buffer[1]
    header = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0:
            raise DecodeError("indefinite length")
        if count > 4:
            raise MessageTooLarge(f"length of {count} octets")
        if available < 2 + count:
            return None
        length = int.from_bytes(buffer[2 : 2 + count], "big")
        header += count
    total = header + length
    if total > maximum:
        raise MessageTooLarge(f"message of {total} bytes")
    return total


def read_integer(data: bytes, start: int, end: int) -> int:
    """
    Decode the contents of an INTEGER or ENUMERATED element.

    @raise DecodeError: the contents are empty or longer than 8 octets; LDAP
        integers fit in 32 bits, and 8 leaves room for needless padding.
    """
    if not 0 < end - start <= 8:
        raise DecodeError(f"integer of {end - start} octets")
    return int.from_bytes(data[start:end], "big", signed=True)


def read_boolean(data: bytes, start: int, end: int) -> bool:
    """
    Decode the contents of a BOOLEAN element; any non-zero octet is TRUE,
    as BER allows.

    @raise DecodeError: the contents are not exactly one octet.
    """
    if end - start != 1:
        raise DecodeError(f"boolean of {end - start} octets")
    return data[start] != 0


def encode_length(length: int) -> bytes:
    """
    Encode a definite length in the shortest form.
    """
    if length < 128:
        return _SHORT_LENGTHS[length]
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def encode_tlv(tag: int, value: bytes) -> bytes:
    """
    Encode one element from its tag and its encoded contents.
    """
    length = len(value)
    if length < 128:
        return bytes((tag, length)) + value
    return bytes((tag,)) + encode_length(length) + value


def encode_integer(value: int, tag: int = TAG_INTEGER) -> bytes:
    """
    Encode an INTEGER (or another tag with integer contents) in the
    shortest two's complement form.
    """
    size = value.bit_length() // 8 + 1
    return encode_tlv(tag, value.to_bytes(size, "big", signed=True))


def encode_enumerated(value: int) -> bytes:
    """
    Encode an ENUMERATED value.
    """
    return encode_integer(value, TAG_ENUMERATED)


def encode_boolean(value: bool, tag: int = TAG_BOOLEAN) -> bytes:
    """
    Encode a BOOLEAN; TRUE is 0xFF as RFC 4511 §5.1 requires.
    """
    return bytes((tag, 1, 0xFF if value else 0x00))


def encode_octet_string(value: str | bytes, tag: int = TAG_OCTET_STRING) -> bytes:
    """
    Encode an OCTET STRING; text is encoded as UTF-8 (RFC 4511 §4.1.2).
    """
    if isinstance(value, str):
        value = value.encode("utf-8")
    return encode_tlv(tag, value)
