// Every emulated device class, registered by importing its folder's registration.
import './mass-storage/register.js';
import './hid/register.js';
import './serial/register.js';
import './gadget-zero/register.js';

export { deviceClass, deviceClasses, parseDeviceSpec } from './classes.js';
