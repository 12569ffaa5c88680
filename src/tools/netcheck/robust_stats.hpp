// Order statistics for noisy measurements: medians and the median absolute deviation, which one
// bad link (or one descheduled sample) cannot drag the way it drags a mean and a standard deviation.
#pragma once

#include <vector>

namespace kumi::netcheck {

// Median of the values (the mean of the middle two for an even count); 0 for none.
double median(std::vector<double> values);
// Median absolute deviation from the median, scaled by 1.4826 so that it estimates the standard
// deviation of normally distributed values; 0 for fewer than two values.
double scaledMad(const std::vector<double>& values);
// The q-quantile (0..1) by linear interpolation; 0 for none.
double quantile(std::vector<double> values, double q);

}  // namespace kumi::netcheck
