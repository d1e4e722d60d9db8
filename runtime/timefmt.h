/* timefmt.h - UTC time formatting shared by rows, archive paths and logs. */
#ifndef BP_TIMEFMT_H
#define BP_TIMEFMT_H

#include "common.h"

#define BP_TIME_STRLEN 32

double bp_time_now(void);
double bp_time_mono(void);
void bp_time_rfc3339(double t, char out[BP_TIME_STRLEN]);
int32_t bp_time_hour_key(double t);
void bp_time_compact(double t, char out[16]);

#endif
