/* placeholder */
typedef int vtp_placeholder_t;
