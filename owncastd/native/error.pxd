# FFmpeg error codes -> typed Python exceptions (see error.pyx).

cdef str av_error_string(int code)
cpdef object make_error(int code, str context=*)
cdef int err_check(int code, str context=*) except -1
