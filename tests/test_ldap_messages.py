"""
Tests for L{idserver.ldap.ber} and L{idserver.ldap.messages}: framing,
strict decoding of requests and encoding of responses.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from ldaptor.protocols import pureber, pureldap
from twisted.trial.unittest import SynchronousTestCase

from idserver.ldap.ber import (
    DecodeError,
    MessageTooLarge,
    encode_integer,
    encode_length,
    encode_tlv,
    frame_length,
    read_tlv,
)
from idserver.ldap.filters import Equality
from idserver.ldap.messages import (
    AbandonRequest,
    BindRequest,
    CompareRequest,
    Control,
    ExtendedRequest,
    ResultCode,
    SearchRequest,
    UnbindRequest,
    UpdateRequest,
    decode_message,
    encode_extended_response,
    encode_message,
    encode_result,
)

from .ldaphelpers import (
    abandon_request,
    bind_request,
    compare_request,
    control,
    delete_request,
    extended_request,
    search_request,
    unbind_request,
)


class BERTests(SynchronousTestCase):
    """
    Tests for the BER primitives.
    """

    def test_lengths(self) -> None:
        """
        Lengths use the short form below 128 and the shortest long form
        above.
        """
        self.assertEqual(encode_length(0), b"\x00")
        self.assertEqual(encode_length(127), b"\x7f")
        self.assertEqual(encode_length(128), b"\x81\x80")
        self.assertEqual(encode_length(256), b"\x82\x01\x00")

    def test_integers(self) -> None:
        """
        Integers use the shortest two's complement form.
        """
        self.assertEqual(encode_integer(0), b"\x02\x01\x00")
        self.assertEqual(encode_integer(127), b"\x02\x01\x7f")
        self.assertEqual(encode_integer(128), b"\x02\x02\x00\x80")
        self.assertEqual(encode_integer(-1), b"\x02\x01\xff")
        self.assertEqual(encode_integer(2**31 - 1), b"\x02\x04\x7f\xff\xff\xff")

    @given(st.binary(max_size=300))
    def test_tlv_matches_ldaptor(self, value: bytes) -> None:
        """
        An octet string encodes as ldaptor encodes it.
        """
        self.assertEqual(
            encode_tlv(0x04, value), pureber.BEROctetString(value).toWire()
        )

    def test_read_rejects_overlong(self) -> None:
        """
        A length reaching past the container, a length of more than four
        octets, and the indefinite form are rejected.
        """
        self.assertRaises(DecodeError, read_tlv, b"\x04\x05abc", 0, 5)
        self.assertRaises(DecodeError, read_tlv, b"\x04\x85\x00\x00\x00\x00\x01a", 0, 8)
        self.assertRaises(DecodeError, read_tlv, b"\x30\x80\x00\x00", 0, 4)
        self.assertRaises(DecodeError, read_tlv, b"\x1f\x01\x00", 0, 3)


class FrameTests(SynchronousTestCase):
    """
    Tests for L{frame_length}.
    """

    def test_incomplete_header(self) -> None:
        """
        Without a complete tag and length, more data is needed.
        """
        self.assertIsNone(frame_length(b"", 100))
        self.assertIsNone(frame_length(b"\x30", 100))
        self.assertIsNone(frame_length(b"\x30\x82\x01", 1000))

    def test_lengths(self) -> None:
        """
        The total includes tag and length octets.
        """
        self.assertEqual(frame_length(b"\x30\x03", 100), 5)
        self.assertEqual(frame_length(b"\x30\x82\x01\x00", 1000), 260)

    def test_too_large(self) -> None:
        """
        A message announcing more than the maximum is rejected before its
        contents arrive, absurd lengths included.
        """
        self.assertRaises(MessageTooLarge, frame_length, b"\x30\x82\x10\x00", 1000)
        self.assertRaises(
            MessageTooLarge, frame_length, b"\x30\x84\xff\xff\xff\xff", 10**6
        )
        self.assertRaises(
            MessageTooLarge, frame_length, b"\x30\x89" + b"\xff" * 9, 10**6
        )

    def test_not_a_sequence(self) -> None:
        """
        A message that does not start with a SEQUENCE is malformed.
        """
        self.assertRaises(DecodeError, frame_length, b"\x04\x00", 100)
        self.assertRaises(DecodeError, frame_length, b"GET / HTTP/1.1", 100)
        self.assertRaises(DecodeError, frame_length, b"\x30\x80", 100)


class DecodeTests(SynchronousTestCase):
    """
    Tests for L{decode_message}.
    """

    def test_bind(self) -> None:
        """
        A simple bind decodes with its version, name and password.
        """
        message = decode_message(bind_request(1, "cn=x", b"pw"))
        self.assertEqual(message.message_id, 1)
        self.assertEqual(message.request, BindRequest(3, "cn=x", b"pw", None))

    def test_bind_repr_hides_password(self) -> None:
        """
        The repr of a bind request does not contain the password.
        """
        self.assertNotIn("hunter2", repr(BindRequest(3, "cn=x", b"hunter2", None)))

    def test_sasl_bind(self) -> None:
        """
        A SASL bind decodes with its mechanism.
        """
        request = pureldap.LDAPBindRequest(dn=b"", auth=(b"EXTERNAL", None), sasl=True)
        data = pureldap.LDAPMessage(request, id=4).toWire()
        self.assertEqual(
            decode_message(data).request, BindRequest(3, "", None, "EXTERNAL")
        )

    def test_search(self) -> None:
        """
        A search decodes with every field, the encoded operation kept.
        """
        data = search_request(
            7,
            "dc=x",
            "(cn=a)",
            scope=1,
            attributes=("cn", "+"),
            size_limit=5,
            time_limit=9,
            types_only=True,
        )
        message = decode_message(data)
        request = message.request
        assert isinstance(request, SearchRequest)
        self.assertEqual(
            (
                request.base,
                request.scope,
                request.size_limit,
                request.time_limit,
                request.types_only,
                request.filter,
                request.attributes,
            ),
            ("dc=x", 1, 5, 9, True, Equality("cn", "a"), ("cn", "+")),
        )
        self.assertTrue(data.endswith(request.encoded[-10:]))

    def test_search_from_ldaptor(self) -> None:
        """
        A search encoded by ldaptor decodes.
        """
        request = pureldap.LDAPSearchRequest(
            baseObject=b"ou=users,dc=x",
            filter=pureldap.LDAPFilter_equalityMatch(
                attributeDesc=pureldap.LDAPAttributeDescription(b"uid"),
                assertionValue=pureldap.LDAPAssertionValue(b"alice"),
            ),
            attributes=[b"mail"],
        )
        message = decode_message(pureldap.LDAPMessage(request, id=3).toWire())
        assert isinstance(message.request, SearchRequest)
        self.assertEqual(message.request.filter, Equality("uid", "alice"))
        self.assertEqual(message.request.attributes, ("mail",))

    def test_other_operations(self) -> None:
        """
        Compare, extended, abandon, unbind and update requests decode.
        """
        self.assertEqual(
            decode_message(compare_request(2, "cn=a", "cn", "b")).request,
            CompareRequest("cn=a", "cn", "b"),
        )
        self.assertEqual(
            decode_message(extended_request(2, "1.2.3", b"v")).request,
            ExtendedRequest("1.2.3", b"v"),
        )
        self.assertEqual(
            decode_message(extended_request(2, "1.2.3")).request,
            ExtendedRequest("1.2.3", None),
        )
        self.assertEqual(
            decode_message(abandon_request(3, 2)).request, AbandonRequest(2)
        )
        self.assertEqual(decode_message(unbind_request(3)).request, UnbindRequest())
        self.assertEqual(
            decode_message(delete_request(3, "cn=a")).request, UpdateRequest(0x6B)
        )

    def test_controls(self) -> None:
        """
        Controls decode with criticality and value, either optional.
        """
        controls = control("1.1.1") + control("1.1.2", b"v", critical=True)
        message = decode_message(extended_request(1, "1.2", controls=controls))
        self.assertEqual(
            message.controls,
            (Control("1.1.1", False, None), Control("1.1.2", True, b"v")),
        )

    def test_message_id_zero(self) -> None:
        """
        Message ID 0 belongs to unsolicited notifications and is rejected.
        """
        self.assertRaises(DecodeError, decode_message, unbind_request(0))

    def test_unknown_operation(self) -> None:
        """
        An unknown or response operation tag is malformed.
        """
        data = encode_tlv(0x30, encode_integer(1) + encode_result(0x65, 0))
        self.assertRaises(DecodeError, decode_message, data)

    def test_invalid_utf8(self) -> None:
        """
        A DN that is not UTF-8 is malformed.
        """
        self.assertRaises(
            DecodeError,
            decode_message,
            bind_request(1, "x", b"").replace(b"x", b"\xff"),
        )

    def test_truncations(self) -> None:
        """
        Every truncation of a valid message fails with L{DecodeError}.
        """
        data = search_request(
            1,
            "ou=users,dc=x",
            "(&(objectClass=user)(|(uid=a)(cn=b*)))",
            attributes=("cn", "mail"),
            controls=control("1.2.840.113556.1.4.319", b"\x30\x05\x02\x01\x05\x04\x00"),
        )
        for end in range(len(data)):
            with self.subTest(end=end):
                self.assertRaises(DecodeError, decode_message, data[:end])

    @given(st.binary(max_size=200))
    def test_random_bytes(self, data: bytes) -> None:
        """
        Random bytes decode or raise L{DecodeError}, nothing else.
        """
        try:
            decode_message(data)
        except DecodeError:
            pass

    @given(st.data())
    def test_mutations(self, data: st.DataObject) -> None:
        """
        Messages with flipped, inserted or removed bytes decode or raise
        L{DecodeError}, nothing else.
        """
        original = bytearray(
            search_request(
                5, "dc=x", "(|(cn=a*)(!(mail=*))(uidNumber>=3))", attributes=("cn",)
            )
        )
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(0, len(original) - 1))
            action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
            if action == "flip":
                original[position] ^= data.draw(st.integers(1, 255))
            elif action == "insert":
                original.insert(position, data.draw(st.integers(0, 255)))
            elif len(original) > 1:
                del original[position]
        try:
            decode_message(bytes(original))
        except DecodeError:
            pass


class EncodeTests(SynchronousTestCase):
    """
    Tests for the response encoders.
    """

    def test_result_matches_ldaptor(self) -> None:
        """
        A SearchResultDone decodes with ldaptor to the same fields.
        """
        data = encode_message(
            9, encode_result(0x65, ResultCode.noSuchObject, "gone", "dc=x")
        )
        decoded, used = pureber.berDecodeObject(
            pureldap.LDAPBERDecoderContext_TopLevel(
                inherit=pureldap.LDAPBERDecoderContext_LDAPMessage(
                    fallback=pureldap.LDAPBERDecoderContext(
                        fallback=pureber.BERDecoderContext()
                    ),
                    inherit=pureldap.LDAPBERDecoderContext(
                        fallback=pureber.BERDecoderContext()
                    ),
                )
            ),
            data,
        )
        self.assertEqual(used, len(data))
        self.assertEqual(decoded.id, 9)
        self.assertEqual(decoded.value.resultCode, 32)
        self.assertEqual(decoded.value.matchedDN, b"dc=x")
        self.assertEqual(decoded.value.errorMessage, b"gone")

    def test_extended_response(self) -> None:
        """
        The name and value of an extended response use tags 10 and 11.
        """
        op = encode_extended_response(ResultCode.success, "", "1.2", b"v")
        self.assertTrue(op.endswith(b"\x8a\x031.2\x8b\x01v"))
