# cython: language_level=3
"""C declarations of the llhttp API used by ``parser_c.pyx``.

Only what the binding touches is declared.  The header comes from the llhttp
sources that ``setup.py`` unpacks from the pinned httptools sdist into
``build/llhttp/include`` (or from the sdist's ``fastasgi/_speedups/llhttp``
copy, or from the system include path with ``FASTASGI_SYSTEM_LLHTTP=1``).
"""

from libc.stdint cimport int32_t, uint8_t, uint16_t, uint64_t


cdef extern from "llhttp.h" nogil:
    int LLHTTP_VERSION_MAJOR
    int LLHTTP_VERSION_MINOR
    int LLHTTP_VERSION_PATCH

    # The parser struct is public in llhttp.h; the binding reads ``method``,
    # ``http_major``/``http_minor``, ``content_length`` and writes ``upgrade``
    # (see parser_c.pyx, on the headers-complete pause).
    struct llhttp__internal_s:
        int32_t error
        const char* reason
        const char* error_pos
        void* data
        uint64_t content_length
        uint8_t type
        uint8_t method
        uint8_t http_major
        uint8_t http_minor
        uint8_t upgrade
        uint16_t flags
    ctypedef llhttp__internal_s llhttp_t

    ctypedef int (*llhttp_data_cb)(llhttp_t*, const char* at, size_t length) noexcept nogil
    ctypedef int (*llhttp_cb)(llhttp_t*) noexcept nogil

    struct llhttp_settings_s:
        llhttp_cb on_message_begin
        llhttp_data_cb on_protocol
        llhttp_data_cb on_url
        llhttp_data_cb on_status
        llhttp_data_cb on_method
        llhttp_data_cb on_version
        llhttp_data_cb on_header_field
        llhttp_data_cb on_header_value
        llhttp_data_cb on_chunk_extension_name
        llhttp_data_cb on_chunk_extension_value
        llhttp_cb on_headers_complete
        llhttp_data_cb on_body
        llhttp_cb on_message_complete
        llhttp_cb on_protocol_complete
        llhttp_cb on_url_complete
        llhttp_cb on_status_complete
        llhttp_cb on_method_complete
        llhttp_cb on_version_complete
        llhttp_cb on_header_field_complete
        llhttp_cb on_header_value_complete
        llhttp_cb on_chunk_extension_name_complete
        llhttp_cb on_chunk_extension_value_complete
        llhttp_cb on_chunk_header
        llhttp_cb on_chunk_complete
        llhttp_cb on_reset
    ctypedef llhttp_settings_s llhttp_settings_t

    enum llhttp_errno:
        HPE_OK
        HPE_INTERNAL
        HPE_STRICT
        HPE_LF_EXPECTED
        HPE_UNEXPECTED_CONTENT_LENGTH
        HPE_CLOSED_CONNECTION
        HPE_INVALID_METHOD
        HPE_INVALID_URL
        HPE_INVALID_CONSTANT
        HPE_INVALID_VERSION
        HPE_INVALID_HEADER_TOKEN
        HPE_INVALID_CONTENT_LENGTH
        HPE_INVALID_CHUNK_SIZE
        HPE_INVALID_STATUS
        HPE_INVALID_EOF_STATE
        HPE_INVALID_TRANSFER_ENCODING
        HPE_CB_MESSAGE_BEGIN
        HPE_CB_HEADERS_COMPLETE
        HPE_CB_MESSAGE_COMPLETE
        HPE_CB_CHUNK_HEADER
        HPE_CB_CHUNK_COMPLETE
        HPE_PAUSED
        HPE_PAUSED_UPGRADE
        HPE_PAUSED_H2_UPGRADE
        HPE_USER
        HPE_CR_EXPECTED
    ctypedef llhttp_errno llhttp_errno_t

    enum llhttp_flags:
        F_CONNECTION_KEEP_ALIVE
        F_CONNECTION_CLOSE
        F_CONNECTION_UPGRADE
        F_CHUNKED
        F_UPGRADE
        F_CONTENT_LENGTH
        F_SKIPBODY
        F_TRAILING
        F_TRANSFER_ENCODING

    enum llhttp_type:
        HTTP_BOTH
        HTTP_REQUEST
        HTTP_RESPONSE
    ctypedef llhttp_type llhttp_type_t

    enum llhttp_method:
        HTTP_DELETE
        HTTP_GET
        HTTP_HEAD
        HTTP_POST
        HTTP_PUT
        HTTP_CONNECT
        HTTP_OPTIONS
    ctypedef llhttp_method llhttp_method_t

    void llhttp_init(llhttp_t* parser, llhttp_type_t type, const llhttp_settings_t* settings)
    void llhttp_settings_init(llhttp_settings_t* settings)
    void llhttp_reset(llhttp_t* parser)
    llhttp_errno_t llhttp_execute(llhttp_t* parser, const char* data, size_t length)
    void llhttp_resume(llhttp_t* parser)
    llhttp_errno_t llhttp_get_errno(const llhttp_t* parser)
    const char* llhttp_get_error_reason(const llhttp_t* parser)
    void llhttp_set_error_reason(llhttp_t* parser, const char* reason)
    const char* llhttp_get_error_pos(const llhttp_t* parser)
    const char* llhttp_errno_name(llhttp_errno_t err)
    const char* llhttp_method_name(llhttp_method_t method)
    void llhttp_set_lenient_keep_alive(llhttp_t* parser, int enabled)
