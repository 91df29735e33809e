// Package sim is an OVH API v1 simulator.
package sim
